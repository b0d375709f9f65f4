"""Muon step time: optforge.Muon vs torch.optim.Muon on a transformer-like set of matrices.

The matrices of a 4-layer, d_model=256 block stack (per layer: qkv (768, 256), attention
out (256, 256), MLP up (1024, 256), MLP down (256, 1024); 16 tensors, 3.1M parameters),
float32, one step per call of ``optimizer.step()`` (Python overhead included). Variants:
  * optforge.Muon with backend="auto" (numba on CPU, triton on CUDA when available) and
    backend="torch"; torch.optim.Muon with the same hyperparameters (lr, weight decay,
    momentum, Nesterov, Newton-Schulz coefficients/steps/eps, adjust_lr_fn="original",
    which is optforge's match_rms_adamw=False);
  * copy kernels (numba on CPU, torch ``copy_``) moving the bytes optforge's traffic
    model gives for the step's elementwise work: context, not a ceiling, since the step
    is dominated by Newton-Schulz matmuls.
Before timing, the three optimizers run a few steps from the same start and must agree
(bfloat16 rounding bound, see ``agreement``). Timing: warmup steps, then the median of
REPEATS steps, variants interleaved within each repeat so a noisy neighbour hurts them all
alike. A second, instrumented run splits each step into Newton-Schulz iterations, the
rest of the matrix stage, the reduce stage, the fused elementwise kernel and the rest.
The plan's stage counts (how many elementwise passes the step makes) go in the JSON.

Prints a table and writes JSON + PNG to benchmarks/results/matrix-<machine>.json/.png.
Usage: python benchmarks/bench_matrix.py [--device cuda] [--repeats N] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import sympy as sp
import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a script or imported
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_elementwise import RESULTS, copy_kernel, machine  # noqa: E402
from plotting import replot  # noqa: E402

import optforge  # noqa: E402
from optforge.compiler import lower  # noqa: E402
from optforge.kernels import matrix as mx  # noqa: E402

LAYER = [("qkv", (768, 256)), ("attn_out", (256, 256)), ("mlp_up", (1024, 256)),
         ("mlp_down", (256, 1024))]
SHAPES = [shape for _ in range(4) for _, shape in LAYER]
HYPER = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True,
             ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5)
AGREE_STEPS = 3
# Both sides round the Newton-Schulz input and every iterate to bfloat16; torch computes
# the Nesterov mix with lerp (1 - momentum in float32), optforge folds it in float64, so
# single elements may round one bfloat16 ulp (2^-8 relative) apart and the iteration
# carries that on. The displacement after a few steps may then differ by a few ulps in
# norm; 2^-6 (4 ulps) is the bound, far below a wrong rule (O(1) relative).
AGREE_TOL = 2.0 ** -6
# Same matrix stage, same float32 elementwise math: optforge's backends agree to float32.
BACKEND_TOL = 1e-6


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_params(shapes, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    return params


def variants(params_for, device):
    """name -> Muon over its own copy of the parameters (``params_for()``), same settings."""
    ours = dict(HYPER, match_rms_adamw=False)
    auto = "optforge-" + ("numba" if device.type == "cpu" else "auto")
    return {auto: optforge.Muon(params_for(), backend="auto", **ours),
            "optforge-torch": optforge.Muon(params_for(), backend="torch", **ours),
            "torch.optim.Muon": torch.optim.Muon(params_for(), adjust_lr_fn="original", **HYPER)}


def _rel(a, b):
    a, b = torch.cat([x.double().flatten() for x in a]), torch.cat([x.double().flatten() for x in b])
    return ((a - b).norm() / b.norm()).item()


def agreement(shapes, device, steps=AGREE_STEPS):
    """Run every variant ``steps`` steps on the same gradients; assert they agree.

    Compared: the displacement p_k - p_0 (not p_k, which would hide the update inside
    the O(1) parameters). Returns the relative differences to torch.optim.Muon.
    """
    start = make_params(shapes, device)
    opts = variants(lambda: [torch.nn.Parameter(p.detach().clone()) for p in start], device)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grads = [torch.randn(s, generator=gen).to(device) for s in shapes]
        for opt in opts.values():
            for p, g in zip(opt.param_groups[0]["params"], grads):
                p.grad = g.clone()
            opt.step()
    moved = {name: [p.detach() - p0.detach() for p, p0 in zip(opt.param_groups[0]["params"],
                                                              start)]
             for name, opt in opts.items()}
    ref = moved.pop("torch.optim.Muon")
    rel = {name: _rel(d, ref) for name, d in moved.items()}
    for name, r in rel.items():
        assert r < AGREE_TOL, f"{name} disagrees with torch.optim.Muon: {r:.2e} >= {AGREE_TOL:.2e}"
    auto, torch_backend = moved.values()
    between = _rel(auto, torch_backend)
    assert between < BACKEND_TOL, f"optforge backends disagree: {between:.2e}"
    return {"vs_torch_optim_displacement_rel": rel, "between_optforge_backends_rel": between,
            "steps": steps, "tolerance": AGREE_TOL}


def _ops(e):
    """Binary arithmetic operations in an expression: one torch op (a pass) each."""
    n = len(e.args) - 1 if isinstance(e, (sp.Add, sp.Mul)) else 0
    if isinstance(e, sp.Pow):
        n = 1
    return n + sum(_ops(a) for a in e.args if isinstance(a, sp.Expr))


def plan_passes():
    """What ``optforge show Muon`` says the step does, counted from the plan itself."""
    spec = optforge.Muon.rule
    plan = lower(spec.build(), spec.hyper_symbols)
    stage_args = [arg for st in plan.matrix_stages for _, node in st.outputs for arg in node.args[:1]]
    pre = plan.pre_plan
    return {
        # the fused pre-stage (momentum + Nesterov mix) and the fused update (+ weight decay)
        "elementwise_passes": int(bool(plan.stores)) + int(pre is not None),
        "pre_stage_writes": [ref.name for ref, _ in pre.stores] if pre else [],
        "elementwise_stage_writes": [ref.name for ref, _ in plan.stores],
        "reduce_stages": len(plan.reduce_stages),
        "reduce_stage_results": [str(r.op) + "/" + r.scope for st in plan.reduce_stages
                                 for r in st.reductions],
        "matrix_stages": len(plan.matrix_stages),
        "matrix_stage_argument": [str(a) for a in stage_args],
        # arithmetic left in the matrix stage's argument would run as separate whole-tensor
        # torch ops (a pass each); the pre-stage leaves it a bare buffer
        "torch_ops_in_matrix_stage_argument": sum(_ops(a) for a in stage_args),
        "torch_optim_muon_elementwise_ops": 4,  # lerp_, lerp, mul_, add_ (read from torch)
    }


class _TimedLauncher:
    """Wraps a compiled launcher: times the fused elementwise call and the reduce calls."""

    def __init__(self, inner, acc, device, key):
        self.inner, self.acc, self.device, self.key = inner, acc, device, key

    def __call__(self, *args, **kwargs):
        with _timer(self.acc, self.key, self.device):
            return self.inner(*args, **kwargs)

    def reduce(self, *args, **kwargs):
        with _timer(self.acc, "reduce stage", self.device):
            return self.inner.reduce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _timer:
    def __init__(self, acc, key, device):
        self.acc, self.key, self.device = acc, key, device

    def __enter__(self):
        sync(self.device)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        sync(self.device)
        self.acc[self.key] = self.acc.get(self.key, 0.0) + time.perf_counter() - self.t0


def instrument(name, opt, acc, device):
    """Time the parts of a step in ``acc`` (seconds, summed over the step's tensors)."""
    if name.startswith("optforge"):
        matrix_stage, launcher = opt._matrix_stage, opt.launcher_for

        def timed_matrix(*a, **k):
            with _timer(acc, "matrix stage", device):
                return matrix_stage(*a, **k)
        opt._matrix_stage = timed_matrix
        opt.launcher_for = lambda compiled, *a: _TimedLauncher(
            launcher(compiled, *a), acc, device,
            "pre-stage kernel" if compiled.plan.rule_name.endswith(":pre") else
            "elementwise kernel")


def _patched_newton_schulz(acc, device):
    """Patch both Newton-Schulz functions (looked up by module attribute at call time)."""
    ours, theirs = mx.orthogonalize, torch.optim._muon._zeropower_via_newtonschulz

    def timed(fn):
        def call(*a, **k):
            with _timer(acc, "newton-schulz", device):
                return fn(*a, **k)
        return call
    mx.orthogonalize = timed(ours)
    torch.optim._muon._zeropower_via_newtonschulz = timed(theirs)
    return lambda: (setattr(mx, "orthogonalize", ours),
                    setattr(torch.optim._muon, "_zeropower_via_newtonschulz", theirs))


def time_steps(shapes, device, repeats, warmup=3, breakdown=True):
    opts = variants(lambda: make_params(shapes, device), device)
    total = sum(a * b for a, b in shapes)
    per_elem = optforge.Muon.traffic("float32").total
    copy_n = total * per_elem // 8  # float32 elements: read half the bytes, write half
    src = torch.ones(copy_n, device=device)
    dst = torch.empty_like(src)
    steps = {name: opt.step for name, opt in opts.items()}
    if device.type == "cpu":
        a, b = src.numpy(), dst.numpy()
        steps["copy-numba"] = lambda: copy_kernel(a, b)
    steps["copy-torch"] = lambda: dst.copy_(src)
    times = {name: [] for name in steps}
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    sync(device)
    for _ in range(repeats):
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    out = {"numel": total, "tensors": len(shapes), "bytes_per_param_traffic_model": per_elem,
           "repeats": repeats, "ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
           "raw_ms": {k: [t * 1e3 for t in v] for k, v in times.items()}}
    ref = out["ms"]["torch.optim.Muon"]
    out["speedup_vs_torch_optim"] = {k: ref / out["ms"][k] for k in opts}
    if breakdown:
        out["breakdown_ms"] = time_breakdown(opts, device, repeats)
    return out


def time_breakdown(opts, device, repeats):
    """Instrumented steps (synchronised around each part): median ms of each part."""
    parts = {name: [] for name in opts}
    accs = {name: {} for name in opts}
    for name, opt in opts.items():
        instrument(name, opt, accs[name], device)
    restore = None
    try:
        for _ in range(repeats):
            for name, opt in opts.items():
                acc = accs[name]
                acc.clear()
                restore = _patched_newton_schulz(acc, device)
                sync(device)
                t0 = time.perf_counter()
                opt.step()
                sync(device)
                acc["step"] = time.perf_counter() - t0
                restore()
                restore = None
                parts[name].append(dict(acc))
    finally:
        if restore is not None:
            restore()
    out = {}
    for name, rows in parts.items():
        split = []
        for r in rows:
            ns = r.get("newton-schulz", 0.0)
            row = {"step": r["step"], "newton-schulz": ns}
            if name.startswith("optforge"):
                row["matrix stage other"] = r["matrix stage"] - ns  # Nesterov ops, casts
                row["reduce stage"] = r.get("reduce stage", 0.0)
                row["pre-stage kernel"] = r.get("pre-stage kernel", 0.0)
                row["elementwise kernel"] = r["elementwise kernel"]
            row["rest"] = row["step"] - sum(v for k, v in row.items() if k != "step")
            split.append(row)
        out[name] = {k: statistics.median(r[k] for r in split) * 1e3 for k in split[0]}
    return out


def table(res, names):
    ms = res["ms"]
    ref = ms["torch.optim.Muon"]
    lines = [f"{'variant':18} {'ms/step':>9} {'x torch.optim':>13}", "-" * 42]
    for name in names:
        lines.append(f"{name:18} {ms[name]:9.2f} {ref / ms[name]:13.2f}")
    for name in [k for k in ms if k.startswith("copy")]:
        gbs = res["numel"] * res["bytes_per_param_traffic_model"] / (ms[name] * 1e-3) / 1e9
        lines.append(f"{name:18} {ms[name]:9.2f} {'':>13}  ({gbs:.1f} GB/s over "
                     f"{res['bytes_per_param_traffic_model']} B/param)")
    if "breakdown_ms" in res:
        keys = ["step", "newton-schulz", "matrix stage other", "reduce stage",
                "pre-stage kernel", "elementwise kernel", "rest"]
        lines += ["", "instrumented step, median ms: " + ", ".join(keys)]
        for name, row in res["breakdown_ms"].items():
            lines.append(f"{name:18} " + " ".join(
                f"{row[k]:8.2f}" if k in row else f"{'-':>8}" for k in keys))
    return "\n".join(lines)


def tag(device, info):
    if device.type == "cuda":
        return "cuda-" + re.sub(r"\W+", "-", torch.cuda.get_device_name(device)).strip("-").lower()
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    return f"cpu{info['cpus']}-{slug}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None, help="torch and numba threads")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda needs a CUDA GPU; none is visible")
    if args.threads:
        import numba
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    info = machine()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    agree = agreement(SHAPES, device)
    print(f"agreement after {agree['steps']} steps (displacement, relative to torch.optim.Muon): "
          + ", ".join(f"{k} {v:.1e}" for k, v in agree["vs_torch_optim_displacement_rel"].items())
          + f"; optforge backends between them {agree['between_optforge_backends_rel']:.1e}")
    passes = plan_passes()
    res = time_steps(SHAPES, device, args.repeats)
    names = [k for k in res["ms"] if not k.startswith("copy")]
    text = table(res, names)
    print(f"\nmachine: {info}\n{len(SHAPES)} matrices, {res['numel'] / 1e6:.2f}M parameters, "
          f"float32, {device}\n{text}")
    print(f"\nplan: {passes['elementwise_passes']} fused elementwise passes: the pre-stage "
          f"writing {passes['pre_stage_writes']}, the update writing "
          f"{passes['elementwise_stage_writes']}; {passes['reduce_stages']} reduce stage "
          f"({passes['reduce_stage_results']}, shape only); {passes['matrix_stages']} matrix "
          f"stage whose argument takes {passes['torch_ops_in_matrix_stage_argument']} torch ops")
    ours = names[0]  # optforge with backend="auto"
    met = res["ms"][ours] <= res["ms"]["torch.optim.Muon"]
    print(f"target (no slower than torch.optim.Muon): {'met' if met else 'NOT met'} "
          f"({ours} {res['speedup_vs_torch_optim'][ours]:.2f}x)")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"matrix-{tag(device, info)}"
    stem.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "device": str(device), "shapes": SHAPES, "hyper": HYPER,
         "agreement": agree, "plan": passes, "results": res, "target_met": met, "table": text}, indent=1))
    replot(stem.with_suffix(".json"))  # benchmarks/plotting.py: re-runnable from the JSON
    print(f"wrote {stem}.json and .png")
    return res


if __name__ == "__main__":
    main()
