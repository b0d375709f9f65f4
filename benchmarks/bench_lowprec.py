"""Memory-lean optimizer states on CPU: fp32 states vs bf16 states (nearest, stochastic)
vs bf16 parameters with Kahan compensation vs 8-bit states, against torch's fused fp32
AdamW and a copy.

For AdamW and Lion, on one tensor of 10M and 50M parameters and on 200 tensors of mixed
sizes (1k-500k, seeded), one run times, interleaved (bench_elementwise.interleaved_times):
  * optforge numba: fp32 states; bf16 states; bf16 states rounded stochastically;
    bf16 parameters + bf16 states with Kahan-compensated parameter updates; 8-bit
    block-wise states (fp32 and bf16 parameters);
  * torch: AdamW(fused=True) in fp32 (Lion: torch has none; the foreach Lion of
    bench_elementwise stands in);
  * a numba copy kernel moving fp32 AdamW's 28 B/param.
Bytes per parameter come from the traffic model (``cls.traffic(**options)``), achieved
GB/s is bytes / median step time, next to the probe's sustained in-place update figure
(a += s b, benchmarks/bandwidth.py, measured in the same run): what a step that writes
only what it read can reach; STREAM's copy and triad also pay write-allocate reads.

Prints a table and writes benchmarks/results/lowprec-<machine>.json and .png.
Usage: python benchmarks/bench_lowprec.py [--quick] [--sizes 1000,2500] [--rules AdamW]
       [--cases 50M] (one rule and case: a quick single measurement)
"""
from __future__ import annotations

import argparse
import gc
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # optforge from a checkout
import bandwidth  # noqa: E402
from plotting import save  # noqa: E402
from bench_elementwise import (HYPER, ForeachLion, copy_kernel, interleaved_times,  # noqa: E402
                               machine)

import optforge  # noqa: E402

RESULTS = Path(__file__).with_name("results")
RULES = ["AdamW", "Lion"]
# variant -> (parameter dtype, storage options)
STORAGE = {
    "fp32 states": (torch.float32, {}),
    "bf16 states": (torch.float32, {"state_dtype": "bfloat16"}),
    "bf16 states SR": (torch.float32, {"state_dtype": "bfloat16", "rounding": "stochastic"}),
    "bf16 params+states kahan": (torch.bfloat16, {"state_dtype": "bfloat16",
                                                  "param_rounding": "kahan"}),
    # 8-bit block-wise states (blocks of 256; tensors below 4096 elements keep float32)
    "8-bit states": (torch.float32, {"state_dtype": "int8"}),
    "bf16 params+8-bit states": (torch.bfloat16, {"state_dtype": "int8"}),
}
REFERENCE = "torch fp32"  # AdamW: torch.optim.AdamW(fused=True); Lion: the foreach Lion
COPY_BYTES = 28  # fp32 AdamW's traffic: the copy moves as much per parameter


def _params(numels, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen).to(dtype)) for n in numels]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(dtype)
    return params


def bytes_per_param(rule: str, variant: str) -> float:
    if variant == REFERENCE:
        return getattr(optforge, rule).traffic("float32").total
    if variant == "copy":
        return COPY_BYTES
    dtype, options = STORAGE[variant]
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    return getattr(optforge, rule).traffic(name, **options).total


def variants(rule: str, numels) -> dict:
    """name -> a zero-argument step, each over parameters of its own."""
    kw = HYPER[rule]
    steps = {}
    for name, (dtype, options) in STORAGE.items():
        opt = getattr(optforge, rule)(_params(numels, dtype), backend="numba", **kw, **options)
        steps[name] = opt.step
    fp32 = _params(numels, torch.float32)
    ref = (torch.optim.AdamW(fp32, fused=True, **kw) if rule == "AdamW"
           else ForeachLion(fp32, **kw))
    steps[REFERENCE] = ref.step
    copy_n = sum(numels) * COPY_BYTES // 8  # float32 elements: half read, half written
    src, dst = np.ones(copy_n, np.float32), np.empty(copy_n, np.float32)
    steps["copy"] = lambda: copy_kernel(src, dst)
    return steps


def time_case(rule: str, numels, repeats: int, warmup: int = 2) -> dict:
    steps = variants(rule, numels)
    times = interleaved_times(steps, repeats, warmup)
    del steps
    gc.collect()
    total = sum(numels)
    ms = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    per = {name: bytes_per_param(rule, name) for name in ms}
    return {"rule": rule, "numel": total, "tensors": len(numels), "ms": ms,
            "bytes_per_param": per,
            "gb_per_s": {n: total * per[n] / (ms[n] * 1e-3) / 1e9 for n in ms},
            "speedup_vs_reference": {n: ms[REFERENCE] / ms[n] for n in ms},
            "state_bytes_per_param": {n: getattr(optforge, rule).state_bytes_per_param(
                "bfloat16" if STORAGE[n][0] == torch.bfloat16 else "float32", **STORAGE[n][1])
                for n in STORAGE},
            "raw_ms": {k: [t * 1e3 for t in v] for k, v in times.items()}}


CASES = ("10M", "50M", "200 mixed")


def cases(quick: bool, sizes: list[int] | None, only=CASES):
    if sizes:
        yield "custom", sizes
        return
    if "10M" in only:
        yield "10M", [10_000_000]
    if "50M" in only and not quick:
        yield "50M", [50_000_000]
    if "200 mixed" in only:
        yield "200 mixed", [int(n) for n in
                            np.random.default_rng(0).integers(1_000, 500_001, 200)]


def table(results, sustained: dict) -> str:
    names = list(STORAGE) + [REFERENCE, "copy"]
    head = f"{'rule':6} {'case':10} {'variant':26} {'ms':>8} {'B/param':>7} {'GB/s':>6} " \
           f"{'x ref':>6} {'% update':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        for n in names:
            lines.append(f"{r['rule']:6} {r['case']:10} {n:26} {r['ms'][n]:8.2f} "
                         f"{r['bytes_per_param'][n]:7.4g} {r['gb_per_s'][n]:6.1f} "
                         f"{r['speedup_vs_reference'][n]:6.2f} "
                         f"{100 * r['gb_per_s'][n] / sustained['update']:8.0f}")
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    from optforge.plots import machine_line, pyplot
    plt = pyplot()
    results = data["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    labels = [f"{r['rule']} {r['case']}" for r in results]
    width = 0.8 / len(STORAGE)
    for k, name in enumerate(STORAGE):
        xs = [i + k * width for i in range(len(results))]
        left.bar(xs, [r["speedup_vs_reference"][name] for r in results], width, label=name)
        right.bar(xs, [r["gb_per_s"][name] for r in results], width, label=name)
    for ax in (left, right):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(results))], labels,
                      rotation=20, fontsize=8)
    left.axhline(1.0, color="black", lw=1)
    left.set_ylabel(f"x faster than {REFERENCE}")
    right.axhline(data["bandwidth"]["sustained_gb_per_s"]["update"], color="grey", ls="--",
                  label="sustained in-place update (probe)")
    right.set_ylabel("achieved GB/s (traffic model bytes / step time)")
    right.legend(fontsize=8)
    fig.suptitle("optforge low-precision states: " + machine_line(data["machine"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip 50M, fewer repeats")
    ap.add_argument("--sizes", help="comma-separated tensor sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--rules", default=",".join(RULES), help="comma-separated, of " + ",".join(RULES))
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated, of " + ",".join(CASES))
    ap.add_argument("--probe-mib", type=int, default=512, help="bandwidth probe's largest array")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    rules, only = args.rules.split(","), args.cases.split(",")
    unknown = sorted(set(rules) - set(RULES)) + sorted(set(only) - set(CASES))
    if unknown:
        ap.error(f"unknown rule or case {unknown}: rules {RULES}, cases {list(CASES)}")
    info = machine()
    probe = bandwidth.measure(args.probe_mib, 3 if (args.quick or sizes) else 7)
    results = []
    for rule in rules:
        for case, numels in cases(args.quick, sizes, only):
            repeats = args.repeats or (3 if sizes else 5 if args.quick else 9)
            r = time_case(rule, numels, repeats)
            r.update(case=case, repeats=repeats)
            results.append(r)
            print(f"  {rule} {case}: bf16 states {r['speedup_vs_reference']['bf16 states']:.2f}x,"
                  f" 8-bit states {r['speedup_vs_reference']['8-bit states']:.2f}x "
                  f"{REFERENCE}", flush=True)
    text = table(results, probe["sustained_gb_per_s"])
    print(text)
    print("sustained (probe): " + ", ".join(
        f"{k} {v:.1f} GB/s" for k, v in probe["sustained_gb_per_s"].items()))
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    stem = args.out / f"lowprec-cpu{info['cpus']}-{slug}"
    chosen = (rules if rules != RULES else []) + (only if only != list(CASES) else [])
    if chosen:  # a partial run keeps the full run's files
        part = re.sub(r"\W+", "-", "-".join(chosen)).strip("-").lower()
        stem = stem.with_name(f"{stem.name}-{part}")
    data = {"machine": info, "bandwidth": probe, "results": results, "table": text}
    return save(stem, data, plot)


if __name__ == "__main__":
    main()
