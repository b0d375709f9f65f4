"""optforge's triton backend vs torch.optim on one CUDA GPU, against the copy bandwidth.

    python benchmarks/bench_gpu.py            # the full run (a few minutes on an H100)
    python benchmarks/bench_gpu.py --quick    # 1M, 16M and the many-tensor set only
    python benchmarks/bench_gpu.py --sizes 16M,64M,256M --no-many   # as make gpu-check
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --device cpu --sizes 4K --reps 2
                                              # the dry run: the interpreter, no GPU

AdamW, Lion, LAMB and Muon (and Adagrad on request); fp32 everywhere, and bf16
parameters (AdamW, Lion, Adagrad: with fp32 states; LAMB, Muon: all bf16); one tensor
of 1M, 16M, 128M and 1B parameters (Muon: a (n / 1024, 1024) matrix) and a ~300-tensor
transformer-like set (GPT-2-medium-like: 292 tensors, 337M parameters).
Each is timed as a whole ``optimizer.step()`` (Python overhead included, as users pay
it) with CUDA events, median of repeated steps after warm-up (autotuning happens in
the warm-up). Baselines: torch.optim with ``foreach=True`` and ``fused=True`` (Lion:
a foreach implementation written here), and a device-to-device copy moving the same
bytes as optforge's traffic model. GB/s = traffic-model bytes / time (torch's own
states follow the parameter dtype, so its bytes are counted with that dtype).
For the many-tensor set in fp32, "optforge-per-tensor" (one param group, hence one
launch, per tensor) measures what the one-launch address-table scheme saves.
Writes benchmarks/results/bench_gpu_<device>.json and .png; sizes that do not fit in
free GPU memory are skipped and reported.
"""
from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
RULES = ("AdamW", "Lion", "LAMB", "Muon")
ALL_RULES = RULES + ("Adagrad",)
SIZES = {"4K": [2**12], "1M": [2**20], "16M": [2**24], "64M": [2**26], "128M": [2**27],
         "256M": [2**28], "1B": [2**30]}
DEFAULT_SIZES = ("1M", "16M", "128M", "1B")
MODES = ("fp32", "bf16p-fp32s")
DEVICE = "cuda"  # --device cpu: the interpreter, for dry runs of the script itself
MATRIX_COLS = 1024  # Muon's parameters: (n / 1024, 1024) matrices


def modes_of(rule: str) -> tuple[str, ...]:
    # bf16 params with fp32 states where a rule variant exists for it, else all bf16
    return MODES if rule in _f32_state_rules() else ("fp32", "bf16")


# ---- rules with float32 states for bf16 parameters (same math as the catalogue) ----------
def _f32_state_rules():
    from optforge.dsl import Rule, grad, lerp, param, sign, sqrt, state, step

    def adamw_f32s(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        p, g, t = param(), grad(), step()
        beta1, beta2 = betas
        m = lerp(state("exp_avg", dtype="float32"), g, 1 - beta1)
        v = beta2 * state("exp_avg_sq", dtype="float32") + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        return Rule(p * (1 - lr * weight_decay) - lr * m / ((1 - beta1**t) * denom),
                    exp_avg=m, exp_avg_sq=v)

    def lion_f32s(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        p, g = param(), grad()
        beta1, beta2 = betas
        m = state("exp_avg", dtype="float32")
        c = beta1 * m + (1 - beta1) * g
        return Rule(p - lr * (sign(c) + weight_decay * p), exp_avg=beta2 * m + (1 - beta2) * g)

    def adagrad_f32s(lr=1e-2, eps=1e-10):
        p, g = param(), grad()
        total = state("sum", dtype="float32") + g * g
        return Rule(p - lr * g / (sqrt(total) + eps), sum=total)

    return {"AdamW": adamw_f32s, "Lion": lion_f32s, "Adagrad": adagrad_f32s}


class ForeachLion(torch.optim.Optimizer):
    """Lion (Chen et al., 2023, Algorithm 2) with torch._foreach ops: the torch baseline."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            gs = [p.grad for p in ps]
            ms = [self.state[p].setdefault("exp_avg", torch.zeros_like(p)) for p in ps]
            b1, b2 = group["betas"]
            c = torch._foreach_mul(ms, b1)
            torch._foreach_add_(c, gs, alpha=1 - b1)
            torch._foreach_sign_(c)
            torch._foreach_mul_(ps, 1 - group["lr"] * group["weight_decay"])
            torch._foreach_add_(ps, c, alpha=-group["lr"])
            torch._foreach_mul_(ms, b2)
            torch._foreach_add_(ms, gs, alpha=1 - b2)


# ---- measurement ------------------------------------------------------------------------
def time_steps(fn, reps: int, warmup: int) -> float:
    """Median seconds a call: CUDA events on the GPU, wall clock in a dry run on the CPU
    (the autotuner's own timers, so a benchmark and a tuning decision measure alike)."""
    from optforge.kernels.triton.autotune import cuda_timer, wall_timer
    timer = wall_timer if DEVICE == "cpu" else cuda_timer
    return timer(fn, reps, warmup)


def make_params(sizes, dtype, seed=0, matrix=False):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    params = []
    for n in sizes:
        shape = (max(1, n // MATRIX_COLS), min(n, MATRIX_COLS)) if matrix else (n,)
        p = torch.nn.Parameter(torch.randn(shape, device=DEVICE, dtype=dtype, generator=gen))
        p.grad = torch.randn(shape, device=DEVICE, dtype=dtype, generator=gen)
        params.append(p)
    return params


def build(method: str, rule: str, mode: str, params):
    import optforge
    if method == "optforge-per-tensor":  # the multi-tensor scheme's ablation:
        # one param group per tensor is one launch per tensor
        return getattr(optforge, rule)([{"params": [p]} for p in params], backend="triton")
    if method == "optforge-triton":
        if mode != "bf16p-fp32s":
            return getattr(optforge, rule)(params, backend="triton")
        return optforge.Optimizer(params, _f32_state_rules()[rule], backend="triton")
    if rule == "Lion":
        return ForeachLion(params) if method == "torch-foreach" else None
    cls = getattr(torch.optim, rule, None)
    if cls is None:  # LAMB: no torch.optim implementation to compare with
        return None
    flags = {"torch-foreach": {"foreach": True}, "torch-fused": {"fused": True},
             "torch": {}}[method]
    try:
        opt = cls(params, **flags)
        opt.step()  # torch checks some support (device, dtype) only here
    except (RuntimeError, ValueError, TypeError) as exc:
        print(f"    {rule} {method}: not available here ({exc})")
        return None
    return opt


def traffic_bytes(rule: str, mode: str, method: str) -> int:
    """Bytes per parameter moved by one step under optforge's traffic model."""
    import optforge
    from optforge.compiler import lower, traffic
    from optforge.dsl import RuleSpec
    param_dtype = "float32" if mode == "fp32" else "bfloat16"
    if mode != "bf16p-fp32s" or not method.startswith("optforge"):  # torch: states in param dtype
        return getattr(optforge, rule).traffic(param_dtype).total
    spec = RuleSpec(_f32_state_rules()[rule])
    return traffic(lower(spec.build(), spec.hyper_symbols), param_dtype).total


def copy_seconds(total_bytes: int, reps: int) -> float:
    src = torch.empty(total_bytes // 2, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    return time_steps(lambda: dst.copy_(src), reps, 3)  # the buffers die with the frame


def fits(sizes, mode: str, method: str) -> tuple[bool, float, float]:
    n = sum(sizes)
    if DEVICE == "cpu":
        return True, 0.0, 0.0
    per = {"fp32": 4 * 4, "bf16p-fp32s": 2 + 2 + 4 * 2, "bf16": 2 * 4}[mode]  # p, g, 2 states
    need = n * per * (1.7 if method.startswith("optforge") else 1.3)  # + scratch/temps
    free, _ = torch.cuda.mem_get_info()
    return need < 0.92 * free, need / 2**30, free / 2**30


def cleanup():
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def run(args) -> dict:
    from optforge.kernels.triton.autotune import transformer_like_sizes
    labels = ("1M", "16M") if args.quick else args.sizes.split(",")
    sets = {label: SIZES[label] for label in labels}
    many = transformer_like_sizes()
    if args.many:
        sets[f"{len(many)}-tensor"] = many
    rows = []
    for rule in args.rules:
        for mode in modes_of(rule):
            for label, sizes in sets.items():
                if rule == "Muon" and len(sizes) > 1:
                    continue  # Muon steps 2-D hidden weights, not a model's every tensor
                n = sum(sizes)
                reps = args.reps or (5 if n >= 2**29 else 20)
                dtype = torch.float32 if mode == "fp32" else torch.bfloat16
                ok, need, free = fits(sizes, mode, "optforge-triton")
                if not ok:
                    print(f"  {rule:8s} {mode:12s} {label:10s} skipped: needs ~{need:.1f} GiB, "
                          f"{free:.1f} GiB free")
                    continue
                copy_bytes = traffic_bytes(rule, mode, "optforge-triton") * n
                t_copy = copy_seconds(copy_bytes, reps)
                copy_gbps = copy_bytes / t_copy / 1e9
                methods = (["optforge-triton", "torch"] if rule == "Muon" else
                           ["optforge-triton", "torch-foreach", "torch-fused"])
                if len(sizes) > 1 and mode == "fp32":
                    methods.append("optforge-per-tensor")
                for method in methods:
                    if not fits(sizes, mode, method)[0]:
                        continue
                    params = make_params(sizes, dtype, matrix=rule == "Muon")
                    opt = build(method, rule, mode, params)
                    if opt is not None:
                        t = time_steps(opt.step, reps, warmup=2 if DEVICE == "cpu" else 3)
                        moved = traffic_bytes(rule, mode, method) * n
                        row = dict(rule=rule, mode=mode, set=label, params=n, tensors=len(sizes),
                                   method=method, seconds=t, bytes_per_param=moved // n,
                                   gbps=moved / t / 1e9, copy_gbps=copy_gbps,
                                   frac_copy=moved / t / 1e9 / copy_gbps)
                        rows.append(row)
                        print(f"  {rule:8s} {mode:12s} {label:10s} {method:16s} "
                              f"{t * 1e3:9.3f} ms {row['gbps']:8.1f} GB/s "
                              f"{row['frac_copy']:6.1%} of copy ({copy_gbps:.0f} GB/s)")
                    del params, opt
                    cleanup()
    return {"rows": rows}


def targets(rows) -> list[str]:
    """The targets, judged on this run: AdamW fp32 single tensors of >= 64M parameters at
    >= 90% of the copy bandwidth and at least as fast as torch fused (issue 18); the
    many-tensor set at least as fast as torch fused."""
    from optforge.kernels.triton.autotune import transformer_like_sizes
    def get(rule, mode, label, method):
        for r in rows:
            if (r["rule"], r["mode"], r["set"], r["method"]) == (rule, mode, label, method):
                return r
        return None
    lines = []
    many = f"{len(transformer_like_sizes())}-tensor"
    for label in sorted({r["set"] for r in rows}, key=lambda x: (x == many, x)):
        ours, fused = (get("AdamW", "fp32", label, m) for m in ("optforge-triton", "torch-fused"))
        if ours is None or fused is None or (label != many and ours["params"] < 2**26):
            continue
        speedup = fused["seconds"] / ours["seconds"]
        if label == many:
            lines.append(f"AdamW fp32 {label}: {speedup:.2f}x torch fused (target >= 1.0): "
                         + ("PASS" if speedup >= 1.0 else "FAIL"))
        else:
            ok = ours["frac_copy"] >= 0.9 and speedup >= 1.0
            lines.append(f"AdamW fp32 {label}: {ours['frac_copy']:.1%} of copy (target >= 90%), "
                         f"{speedup:.2f}x torch fused (target >= 1.0): "
                         + ("PASS" if ok else "FAIL"))
    return lines


def plot(rows, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = ["optforge-triton", "optforge-per-tensor", "torch-foreach", "torch-fused",
               "torch"]
    rules = sorted({r["rule"] for r in rows})
    fig, axes = plt.subplots(len(rules), 1, figsize=(12, 3.6 * len(rules)), squeeze=False)
    for ax, rule in zip(axes[:, 0], rules):
        cases = sorted({(r["mode"], r["set"], r["params"]) for r in rows if r["rule"] == rule},
                       key=lambda c: (c[0], c[2]))
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ys = [next((r["gbps"] for r in rows if (r["rule"], r["mode"], r["set"], r["method"])
                        == (rule, c[0], c[1], m)), 0.0) for c in cases]
            ax.bar([k + i * width for k in range(len(cases))], ys, width, label=m)
        copies = [next(r["copy_gbps"] for r in rows if (r["rule"], r["mode"], r["set"])
                       == (rule, c[0], c[1])) for c in cases]
        ax.plot([k + width for k in range(len(cases))], copies, "k_", markersize=18,
                label="device copy")
        ax.set_xticks([k + width for k in range(len(cases))])
        ax.set_xticklabels([f"{c[0]}\n{c[1]}" for c in cases], fontsize=8)
        ax.set_ylabel("GB/s (traffic model)")
        ax.set_title(f"{rule} step — {title}")
        ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--rules", nargs="*", default=list(RULES), choices=ALL_RULES)
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated labels of {sorted(SIZES)}")
    parser.add_argument("--no-many", dest="many", action="store_false",
                        help="leave out the ~300-tensor transformer-like set")
    parser.add_argument("--reps", type=int, default=0, help="timed steps (default 5-20)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: a dry run under TRITON_INTERPRET=1 (timings meaningless)")
    parser.add_argument("--out", default="", help="output path stem (default: results/)")
    args = parser.parse_args(argv)
    unknown = [x for x in args.sizes.split(",") if x not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; known: {sorted(SIZES)}")
    DEVICE = args.device
    if DEVICE == "cpu":
        from optforge.kernels.triton.available import interpreter_on
        if not interpreter_on():
            print("bench_gpu.py --device cpu is a dry run of the script under the Triton "
                  "interpreter: set TRITON_INTERPRET=1", file=sys.stderr)
            return 2
    elif not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this "
              "machine, so nothing was measured (run it on an H100/H200).", file=sys.stderr)
        return 2
    import triton
    if DEVICE == "cuda":
        name = torch.cuda.get_device_name()
        cap = "sm_%d%d" % torch.cuda.get_device_capability()
    else:
        name, cap = "cpu-interpreter (dry run)", "none"
    print(f"# {name} ({cap}), torch {torch.__version__}, triton {triton.__version__}")
    started = time.time()
    result = run(args)
    result.update(device=name, capability=cap, torch=torch.__version__,
                  triton=triton.__version__, quick=args.quick,
                  seconds=round(time.time() - started, 1),
                  when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    result["targets"] = targets(result["rows"])
    for line in result["targets"]:
        print(line)
    if args.out:
        stem = Path(args.out)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
        stem = RESULTS / f"bench_gpu_{slug}{'_quick' if args.quick else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    if result["rows"]:
        plot(result["rows"], stem.with_suffix(".png"), name)
    print(f"wrote {stem}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
