"""Numba compile time per catalogue rule: how long a user waits for the first step.

Each rule runs in a fresh process with a fresh (temporary) kernel cache, so every
generated kernel compiles from scratch (Numba's caches of optforge's own helpers,
``kernels/numba/helpers.py`` and ``philox.py``, are warm: they compile once per install).
The process builds the rule's optimizer (backend="numba") over a small model (a 64x48
and a 10x64 weight with their biases), takes two steps, and reports:

  * ``compile_s``: construction + first step - second step (lowering, code generation,
    Numba compilation of every kernel the step runs);
  * ``kernels``: seconds of each kernel's first launch (its compilation: the data is tiny),
    named ``elementwise`` or ``r<k>`` (reduce stage k), pre-stage kernels prefixed ``pre``;
  * ``compile_cpu_s`` and ``kernels_cpu``: the same in CPU seconds of the process (of the
    launching thread), which a busy shared machine inflates far less than wall time.

Rules the numba backend cannot run alone (matrix stages, closures) are listed with the
reason. Prints a table; writes benchmarks/results/compile-times.json.

On the shared 2-core machine wall seconds swing 2-4x with its load (AdamP: 4.8 s at load
3, 18-28 s at load 7-9), CPU seconds far less: compare CPU seconds, or before/after
interleaved with ``--base``. What that showed (results/compile-times-own-threads-
experiment.json): reduce stages compiled serial (parallel=False, the blocks spread over
optforge's own threads) took as long in a rule's first step as the prange kernels (AdamP
5.09 vs 5.16 CPU s, 11 reduction rules within noise), although AdamP's r0 compiled by
itself (``dispatcher.compile(sig)`` after a step had run) took 3.4 CPU s as a prange
kernel and 1.5 serial, a difference not yet explained; the change was reverted.
Usage: python benchmarks/bench_compile.py [--rules LAMB,AdamP,...] [--reduce-only]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # this checkout's optforge (a child process may ask for another)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optforge.dsl import Rule, amax, grad, maximum, mean, minimum, param, sqrt, state

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]


def adafactor_like(lr=1e-2, beta=0.9, eps=1e-30, clip=1.0):
    """Adafactor's factored second moment (row and column means of g^2 over their product's
    mean) with update-RMS clipping: row, column and tensor reductions in two stages. (The
    factored moments are not averaged over steps here: that needs row/column states.)"""
    p, g = param(), grad()
    g2 = g * g + eps
    u = g / sqrt(mean(g2, over="row") * mean(g2, over="col") / mean(g2))
    u = u / maximum(1, sqrt(mean(u * u)) / clip)
    m = beta * state("m") + (1 - beta) * u
    return Rule(p - lr * m, m=m)


def sm3_like(lr=1e-2, beta=0.9, eps=1e-30):
    """SM3's cover of rows and columns: the smaller of the row and column maxima of g^2."""
    p, g = param(), grad()
    nu = minimum(amax(g * g, over="row"), amax(g * g, over="col"))
    m = beta * state("m") + (1 - beta) * g / sqrt(nu + eps)
    return Rule(p - lr * m, m=m)


# rules written here (not in the catalogue) with the row/column reductions of Adafactor and
# SM3, whose compile time issue 15 names
EXTRA_RULES = {"adafactor_like": adafactor_like, "sm3_like": sm3_like}

ONE_RULE = r"""
import json, re, sys, time
import torch
import optforge
from optforge.catalogue._base import REGISTRY
from optforge.kernels.numba import launcher
from bench_compile import EXTRA_RULES

kernels, kernels_cpu, seen = {}, {}, set()
original = launcher._launch

def timed_launch(module, fn, args, total):
    start, cpu = time.perf_counter(), time.thread_time()
    original(module, fn, args, total)
    key = (id(module), id(fn))
    if key not in seen:  # the first launch compiles (tiny data: the run itself is ~us)
        seen.add(key)
        stage = re.search(r"_r\d+$", fn.py_func.__name__)
        stage = stage.group(0)[1:] if stage else "elementwise"
        label = stage if stage not in kernels else "pre-" + stage
        kernels[label] = time.perf_counter() - start
        kernels_cpu[label] = time.thread_time() - cpu

launcher._launch = timed_launch
gen = torch.Generator().manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(48, 64), torch.nn.Linear(64, 10))

def closure():
    model.zero_grad()
    loss = model(torch.randn(8, 48, generator=gen)).square().mean()
    loss.backward()
    return loss

name = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
if name in EXTRA_RULES:
    opt = optforge.Optimizer(model.parameters(), EXTRA_RULES[name], backend="numba")
else:
    opt = REGISTRY[name](model.parameters(), backend="numba")
closure()
try:
    opt.step()
except Exception:  # a rule that needs the closure (Hessian-vector products, line searches)
    opt.step(closure)
t1, c1 = time.perf_counter(), time.process_time()
closure()
try:
    opt.step()
except Exception:
    opt.step(closure)
t2, c2 = time.perf_counter(), time.process_time()
print("RESULT " + json.dumps({"first_s": t1 - t0, "second_s": t2 - t1,
                              "compile_s": (t1 - t0) - (t2 - t1), "kernels": kernels,
                              "compile_cpu_s": (c1 - c0) - (c2 - c1),
                              "kernels_cpu": kernels_cpu}))
"""


def measure(rule: str, checkout: Path = ROOT, timeout: float = 300) -> dict:
    """One rule in a fresh process with an empty kernel cache, optforge from ``checkout``."""
    with tempfile.TemporaryDirectory(prefix="optforge-bench-compile-") as cache:
        env = dict(os.environ, OPTFORGE_CACHE_DIR=cache,
                   PYTHONPATH=os.pathsep.join([str(checkout), str(ROOT / "benchmarks")]))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", ONE_RULE, rule], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=timeout)
        wall = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            found = json.loads(line[len("RESULT "):])
            found["process_s"] = wall
            return found
    reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"skipped": reason[:200], "process_s": wall}


def catalogue(reduce_only: bool) -> list[str]:
    """The registered rules (those with reduce stages only, when asked)."""
    from optforge.catalogue._base import REGISTRY
    from optforge.runtime.compiled import compile_rule
    names = []
    for name, cls in REGISTRY.items():
        if reduce_only:
            spec = cls.rule
            try:
                plan = compile_rule(spec, spec.variant_of(dict(spec.defaults))).plan
            except Exception:  # noqa: BLE001 - a rule that needs hyperparameters given
                continue
            if not plan.reduce_stages:
                continue
        names.append(name)
    return names


def table(results: dict) -> str:
    head = f"{'rule':22} {'compile s':>9} {'CPU s':>6}  kernels (CPU s)"
    lines = [head, "-" * 70]
    for rule, r in results.items():
        if "skipped" in r:
            lines.append(f"{rule:22} {'-':>9} {'-':>6}  skipped: {r['skipped'][:60]}")
            continue
        ks = ", ".join(f"{k} {v:.2f}" for k, v in r["kernels_cpu"].items())
        lines.append(f"{rule:22} {r['compile_s']:9.2f} {r['compile_cpu_s']:6.2f}  {ks}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", default="", help="comma-separated names (default: all)")
    ap.add_argument("--reduce-only", action="store_true",
                    help="only the rules with reduce stages")
    ap.add_argument("--out", default=str(RESULTS / "compile-times.json"))
    ap.add_argument("--base", default="", help="another checkout, measured after each rule "
                    "(before/after on the same machine load)")
    args = ap.parse_args(argv)
    rules = [r for r in args.rules.split(",") if r] or [*catalogue(args.reduce_only),
                                                        *EXTRA_RULES]
    load_start = os.getloadavg()
    measure("SGD")  # compiles optforge's own helper kernels into their disk cache once
    results, base = {}, {}
    for rule in rules:
        results[rule] = measure(rule)
        if args.base:
            base[rule] = measure(rule, Path(args.base))
        r = results[rule]
        print(f"  {rule}: " + (f"{r['compile_s']:.2f} s" if "compile_s" in r
                               else f"skipped ({r['skipped'][:80]})")
              + (f" (base {base[rule].get('compile_s', float('nan')):.2f} s)"
                 if args.base else ""), flush=True)
    text = table(results) + (f"\n\nbase ({args.base}):\n" + table(base) if args.base else "")
    print(text)
    record = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_start,
                          "load_avg_at_end": os.getloadavg()},
              "results": results, "base": base or None, "table": text}
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
