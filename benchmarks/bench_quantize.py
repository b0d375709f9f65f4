"""What 8-bit block-wise states cost in compute on this CPU, next to what they save in bytes.

An 8-bit AdamW moves ~16 B/param instead of 28 (p read+write 8, g 4, two 1-byte codes read
and written 4, scales ~0.03): at the memory's bandwidth that is 1.75x fewer bytes. It only
runs faster if dequantizing and requantizing two states fit in the time those bytes take.
This measures, in one run on the same buffers:
  * torch's fused fp32 AdamW step (the baseline) and a copy moving 16 B/param;
  * finding the 8-bit code of one float32 value per element (a) by binary search over the
    255 decision boundaries and (b) in closed form: decade from six comparisons, cell from
    one multiply-add (both exact nearest codes but at exact ties, checked here);
and prints the per-element budget: for the 8-bit step to be ``--target``x faster than the
fused fp32 step, everything (math, two dequantizations, two quantizations) must take at most
fused_time / target.

Usage: python benchmarks/bench_quantize.py [--numel 52428800] [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from numba import njit, prange

from optforge.compiler.quant_map import dynamic_map, midpoints
from optforge.kernels.triton.autotune import wall_timer

RESULTS = Path(__file__).with_name("results")


@njit(parallel=True)
def copy(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


@njit(parallel=True)
def binary_search(xs, out, bounds):
    """Code = how many boundaries lie below x: eight dependent halvings (bounds padded to
    256 entries with +inf)."""
    for i in prange(xs.shape[0]):
        x, lo = xs[i], 0
        for step in (128, 64, 32, 16, 8, 4, 2, 1):
            lo += step * (bounds[lo + step - 1] < x)
        out[i] = lo


def closed_form_constants(signed: bool = False) -> tuple:
    """Unsigned map: per decade k the cell slope, offset, first code, count, and the lower
    decision boundary (shared with the code below)."""
    assert not signed, "the unsigned map is the one measured here"
    table = np.array(dynamic_map(False), np.float64)
    first = [2 ** (k + 1) - 1 for k in range(7)]
    low = np.array([(table[s - 1] + table[s]) / 2 for s in first], np.float32)
    top = np.float32((table[254] + table[255]) / 2)
    return low, top


@njit(parallel=True)
def closed_form(xs, out, low, top):
    """The unsigned dynamic map's code without a table search: each passed decade threshold
    doubles the cell count and scales the slope by 2/10; the cell index is floor(a*A - B)."""
    for i in prange(xs.shape[0]):
        a = xs[i]
        slope, offset = np.float32(2 / 0.9e-6), np.float32(0.2 / 0.9)
        start, count, lower = np.float32(1.0), np.float32(2.0), low[0]
        threshold = np.float32(1e-6)
        for k in range(1, 7):
            up = a >= threshold
            slope = slope * np.float32(0.2) if up else slope
            offset = offset * np.float32(2.0) if up else offset
            start = start * np.float32(2.0) + np.float32(1.0) if up else start
            count = count * np.float32(2.0) if up else count
            lower = low[k] if up else lower
            threshold = threshold * np.float32(10.0)
        cell = min(max(a * slope - offset, np.float32(0.0)), count - np.float32(1.0))
        code = start + np.floor(cell)
        code = start - np.float32(1.0) if a <= lower else code
        out[i] = np.uint8(np.float32(255.0) if a > top else code)


def median_ms(fn, repeats: int) -> float:
    return wall_timer(fn, repeats, warmup=1) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--numel", type=int, default=50 * 2**20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--target", type=float, default=1.5)
    args = ap.parse_args()
    n = args.numel
    rng = np.random.default_rng(0)
    xs = (rng.uniform(0, 1, n) * 10.0 ** rng.uniform(-8, 0, n)).astype(np.float32)
    bounds = np.array(midpoints(False) + (np.inf,), np.float32)
    low, top = closed_form_constants()
    codes_a, codes_b = np.empty(n, np.uint8), np.empty(n, np.uint8)
    src = np.ones(n * 2, np.float32)  # 16 B/param: read 8, write 8
    dst = np.empty_like(src)
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = torch.randn(n)
    fused = torch.optim.AdamW([p], lr=1e-3, weight_decay=1e-2, fused=True)
    ms = {"torch fused fp32 AdamW step": median_ms(fused.step, args.repeats),
          "copy 16 B/param": median_ms(lambda: copy(src, dst), args.repeats),
          "quantize: binary search": median_ms(lambda: binary_search(xs, codes_a, bounds),
                                               args.repeats),
          "quantize: closed form": median_ms(lambda: closed_form(xs, codes_b, low, top),
                                             args.repeats)}
    agree = float(np.mean(codes_a == codes_b))
    budget = ms["torch fused fp32 AdamW step"] / args.target
    print(f"{n} elements, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for k, v in ms.items():
        print(f"  {k:32} {v:8.1f} ms  {v / n * 1e6:6.2f} ns/element")
    print(f"  codes agree (closed form vs search): {agree:.7f} (differences: exact ties only)")
    need = 2 * ms["quantize: closed form"] + ms["copy 16 B/param"]
    print(f"  {args.target}x faster than fused needs <= {budget:.1f} ms for the whole 8-bit step; "
          f"two closed-form quantizations plus the 16 B/param of traffic alone take "
          f"{need:.1f} ms")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize-cpu.json").write_text(json.dumps(
        {"numel": n, "ms": ms, "codes_agree": agree, "target": args.target,
         "budget_ms": budget, "two_quantizations_plus_traffic_ms": need}, indent=1))


if __name__ == "__main__":
    main()
