"""Elementwise optimizer steps on CPU: optforge's numba backend vs torch.optim vs a copy kernel.

For AdamW, Lion and Adagrad, on one tensor of 1M, 10M and 50M parameters and on 200
tensors of mixed sizes (1k-500k, seeded), one run times:
  * optforge (backend="numba", one kernel call per step for all tensors);
  * torch.optim with foreach=False, foreach=True and fused=True (where torch has it);
    torch has no Lion, so the benchmark writes a per-tensor and a foreach Lion here;
  * a numba copy kernel moving the same bytes as the traffic model says the step
    moves (read + write), the bandwidth ceiling the step is compared with.
Each variant: warmup steps, then the median of REPEATS timed steps; variants are
interleaved within each repeat so a noisy neighbour hurts them all alike, in an order
that rotates each repeat (see interleaved_times).
Then a fresh process runs two AdamW steps on the warm disk cache (time to first step,
and the second step's time).

Prints a table and writes JSON + PNG to benchmarks/results/, named after the machine.
Usage: python benchmarks/bench_elementwise.py [--quick]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

import optforge
from plotting import replot  # noqa: E402 - benchmarks/ is on sys.path when run

RESULTS = Path(__file__).with_name("results")
RULES = ["AdamW", "Lion", "Adagrad"]
HYPER = {"AdamW": dict(lr=1e-3, weight_decay=1e-2), "Lion": dict(lr=1e-4, weight_decay=0.1),
         "Adagrad": dict(lr=1e-2, weight_decay=0.0)}


@numba.njit(parallel=True, cache=True)
def copy_kernel(src, dst):
    for i in numba.prange(src.shape[0]):
        dst[i] = src[i]


class LoopLion:
    """Lion (Chen et al. 2023, Alg. 2) as plain per-tensor torch ops: the foreach=False analogue."""

    def __init__(self, params, lr, weight_decay, betas=(0.9, 0.99)):
        self.params, self.lr, self.wd, self.betas = list(params), lr, weight_decay, betas
        self.m = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for p, m in zip(self.params, self.m):
            c = m.mul(b1).add_(p.grad, alpha=1 - b1).sign_()
            p.mul_(1 - self.lr * self.wd).add_(c, alpha=-self.lr)
            m.mul_(b2).add_(p.grad, alpha=1 - b2)


class ForeachLion(LoopLion):
    """The same Lion with torch._foreach_* ops: one op per list, as torch's foreach optimizers."""

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        grads = [p.grad for p in self.params]
        c = torch._foreach_mul(self.m, b1)
        torch._foreach_add_(c, grads, alpha=1 - b1)
        torch._foreach_sign_(c)
        torch._foreach_mul_(self.params, 1 - self.lr * self.wd)
        torch._foreach_add_(self.params, c, alpha=-self.lr)
        torch._foreach_mul_(self.m, b2)
        torch._foreach_add_(self.m, grads, alpha=1 - b2)


def variants(rule: str, params):
    """name -> optimizer over ``params`` (each with its own state)."""
    kw = HYPER[rule]
    out = {"optforge-numba": getattr(optforge, rule)(params, backend="numba", **kw)}
    if rule == "Lion":
        out["torch-loop"] = LoopLion(params, **kw)
        out["torch-foreach"] = ForeachLion(params, **kw)
    else:
        cls = getattr(torch.optim, rule)
        out["torch-loop"] = cls(params, foreach=False, **kw)
        out["torch-foreach"] = cls(params, foreach=True, **kw)
        out["torch-fused"] = cls(params, fused=True, **kw)
    return out


def cases(quick: bool):
    sizes = np.random.default_rng(0).integers(1_000, 500_001, 200)
    yield "1M", [1_000_000]
    yield "10M", [10_000_000]
    if not quick:
        yield "50M", [50_000_000]
    yield "200 mixed", [int(n) for n in sizes]


def interleaved_times(steps: dict, repeats: int, warmup: int = 2) -> dict:
    """name -> seconds of each timed call. Variants are interleaved within a repeat so a
    noisy neighbour hurts them all alike, and the order rotates by one each repeat: a
    fixed order gave every variant the same predecessor, and the one that always ran
    right after the copy kernel (optforge, until this was changed) started each step
    with the copy's dirty cache lines to write back (AdamW 1M: 0.62x fused with a fixed
    order, 0.69x rotated, in the runs that found it)."""
    names = list(steps)
    times = {name: [] for name in names}
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return times


def time_case(rule, numels, repeats, warmup=2, make=None, per_elem=None):
    """Time ``make(rule, params)``'s optimizers (default: this file's variants) and a
    copy kernel over ``per_elem`` bytes per parameter (default: the rule's traffic)."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in numels]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opts = (make or variants)(rule, params)
    total = sum(numels)
    per_elem = per_elem or getattr(optforge, rule).traffic("float32").total
    copy_n = total * per_elem // 8  # float32 elements: read half the bytes, write half
    src, dst = np.ones(copy_n, np.float32), np.empty(copy_n, np.float32)
    steps = {name: opt.step for name, opt in opts.items()}
    steps["copy"] = lambda: copy_kernel(src, dst)
    times = interleaved_times(steps, repeats, warmup)
    del opts, params, steps
    src = dst = None  # (not del: the copy lambda above names them)
    gc.collect()
    ms = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    gbs = {name: total * per_elem / (t * 1e-3) / 1e9 for name, t in ms.items()}
    return {"numel": total, "tensors": len(numels), "bytes_per_param": per_elem, "ms": ms,
            "gb_per_s": gbs, "order": "interleaved, rotated by one each repeat",
            "raw_ms": {k: [t * 1e3 for t in v] for k, v in times.items()}}


FIRST_STEP = r"""
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import optforge
t2 = time.perf_counter()
# torch.optim's first optimizer imports torch._dynamo (~1 s): every torch optimizer pays
# it once per process, so it is timed apart from optforge's own first step
torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
t3 = time.perf_counter()
p = torch.nn.Parameter(torch.randn(1_000_000)); p.grad = torch.randn(1_000_000)
t4 = time.perf_counter()
opt = optforge.AdamW([p], lr=1e-3, backend="numba"); opt.step()
t5 = time.perf_counter()
# the first step pauses the garbage collector (optforge/runtime/gc_pause.py): the
# objects it made are collected later, so the second step is timed too
opt.step()
t6 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t5 - t4, t5 - t0, t6 - t5)
"""


def first_step(runs=3):
    """A fresh process, warm disk cache: seconds for imports and for the first AdamW step."""
    out = []
    for _ in range(runs + 1):  # the first run warms the cache if nothing else did
        done = subprocess.run([sys.executable, "-c", FIRST_STEP], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1])
        out.append([float(x) for x in done.stdout.split()])
    rows = out[1:]
    keys = ["import_torch_s", "import_optforge_s", "torch_optim_first_use_s", "first_step_s",
            "process_total_s", "second_step_s"]
    return {k: statistics.median(r[i] for r in rows) for i, k in enumerate(keys)}


def machine():
    model = "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        model = platform.processor() or model
    return {"cpus": os.cpu_count(), "model": model, "torch": torch.__version__,
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "torch_threads": torch.get_num_threads(), "load_avg_at_start": os.getloadavg()}


def table(results):
    head = (f"{'rule':8} {'case':10} {'numba ms':>9} {'loop ms':>8} {'foreach ms':>10} "
            f"{'fused ms':>9} {'x loop':>7} {'x foreach':>9} {'x fused':>8} {'GB/s':>6} "
            f"{'copy GB/s':>9} {'% copy':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        ms, gbs = r["ms"], r["gb_per_s"]
        ours = ms["optforge-numba"]
        fused = ms.get("torch-fused")
        lines.append(
            f"{r['rule']:8} {r['case']:10} {ours:9.2f} {ms['torch-loop']:8.2f} "
            f"{ms['torch-foreach']:10.2f} {(f'{fused:9.2f}' if fused else '        -')} "
            f"{ms['torch-loop'] / ours:7.2f} {ms['torch-foreach'] / ours:9.2f} "
            f"{(f'{fused / ours:8.2f}' if fused else '       -')} {gbs['optforge-numba']:6.1f} "
            f"{gbs['copy']:9.1f} {100 * gbs['optforge-numba'] / gbs['copy']:6.0f}")
    return "\n".join(lines)


def run_cases(rules, time_case, args, label="numba") -> list[dict]:
    """Every rule on every case of ``cases``; ``time_case(rule, numels, repeats)``."""
    results = []
    for rule in rules:
        for case, numels in cases(args.quick):
            repeats = args.repeats or (5 if args.quick else (7 if sum(numels) > 20e6 else 15))
            r = time_case(rule, numels, repeats)
            r.update(rule=rule, case=case, repeats=repeats)
            results.append(r)
            print(f"  {rule} {case}: {label} {r['ms']['optforge-numba']:.2f} ms", flush=True)
    return results


def describe(info: dict) -> str:
    return (f"machine: {info['cpus']} CPUs, {info['model']}; numba {info['numba']} "
            f"({info['numba_threads']} threads), torch {info['torch']} "
            f"({info['torch_threads']} threads); load average at start "
            f"{info['load_avg_at_start']}, at end {info.get('load_avg_at_end')}")


def write_results(prefix: str, record: dict) -> Path:
    """``record`` as benchmarks/results/<prefix>-<machine>.json, and its plot."""
    info = record["machine"]
    RESULTS.mkdir(exist_ok=True)
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    stem = RESULTS / f"{prefix}-cpu{info['cpus']}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    replot(stem.with_suffix(".json"))  # benchmarks/plotting.py: re-runnable from the JSON
    print(f"wrote {stem}.json and .png")
    return stem


def arguments():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip 50M, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    return ap.parse_args()


def main():
    args = arguments()
    info = machine()
    results = run_cases(RULES, time_case, args)
    info["load_avg_at_end"] = os.getloadavg()
    text = table(results)
    warm = first_step()
    print()
    print(describe(info))
    print(text)
    print(f"\nAdamW 1M, fresh process, warm disk cache: construct + first step "
          f"{warm['first_step_s']:.3f} s, second step {warm['second_step_s']:.3f} s "
          f"(before it: import torch {warm['import_torch_s']:.2f} s, "
          f"import optforge {warm['import_optforge_s']:.2f} s, torch.optim's one-time dynamo "
          f"import {warm['torch_optim_first_use_s']:.2f} s; process start to step done "
          f"{warm['process_total_s']:.2f} s)")
    write_results("elementwise", {"machine": info, "results": results,
                                  "first_step_warm_cache": warm, "table": text})


if __name__ == "__main__":
    main()
