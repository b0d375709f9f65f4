"""The fixed cost of one optimizer step on CPU: the step's Python and launch work.

On small models and at 1M parameters per step the kernel is not the whole story: the
runtime's stages (collect, check, launch, commit), torch.optim's step wrapper (hooks,
profiler record) and the launch itself cost the same tens of microseconds whatever the
tensor size, and the kernel's memory traffic slows that Python work further (its
caches are cold after each kernel). This measures it where nothing else does, on
tensors too small for their arithmetic to count:

* "1 x 16": one 16-element parameter, the per-step cost;
* "200 x 16": 200 of them in one param group, adding the per-tensor cost.

Rules and references as in bench_elementwise.py (AdamW, Lion, Adagrad: torch.optim's
loop/foreach/fused, a plain-torch Lion) and bench_multistage.py (LAMB vs
pytorch-optimizer's Lamb, global-clip AdamW vs clip_grad_norm_ + fused AdamW).
Variants interleaved and rotated within each repeat (bench_elementwise.interleaved_times);
the median microseconds per step. The same script runs against another checkout with
``PYTHONPATH=<checkout> python benchmarks/bench_step_overhead.py --out <file>``
(public API only), which is how the before/after figures in the notes were taken.
Writes benchmarks/results/step-overhead-<machine>.json.
Usage: python benchmarks/bench_step_overhead.py [--repeats N] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_elementwise  # noqa: E402
import bench_multistage  # noqa: E402

CASES = {"1 x 16": [16], "200 x 16": [16] * 200}
RULES = ("AdamW", "Lion", "Adagrad", "LAMB", "clip+AdamW")


def optimizers(rule: str, params) -> dict:
    """name -> optimizer over ``params``, the benchmarks' own variants."""
    if rule in ("LAMB", "clip+AdamW"):
        return bench_multistage.variants(rule, params)
    return bench_elementwise.variants(rule, params)


def time_case(rule: str, numels: list[int], repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in numels]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    steps = {name: opt.step for name, opt in optimizers(rule, params).items()}
    times = bench_elementwise.interleaved_times(steps, repeats, warmup=20)
    return {name: statistics.median(v) * 1e6 for name, v in times.items()}


def table(results: list[dict]) -> str:
    head = f"{'rule':11} {'case':9} {'optforge us':>11} {'best reference':>18} {'ref us':>8} " \
           f"{'ours/ref':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        us = r["us"]
        ours = us["optforge-numba"]
        best = min((k for k in us if k != "optforge-numba"), key=us.get)
        lines.append(f"{r['rule']:11} {r['case']:9} {ours:11.1f} {best:>18} {us[best]:8.1f} "
                     f"{ours / us[best]:8.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    info = bench_elementwise.machine()
    results = []
    for rule in RULES:
        for case, numels in CASES.items():
            results.append({"rule": rule, "case": case,
                            "us": time_case(rule, numels, args.repeats)})
            print(f"  {rule} {case}: {results[-1]['us']['optforge-numba']:.1f} us", flush=True)
    info["load_avg_at_end"] = os.getloadavg()
    import optforge
    info["optforge"] = str(Path(optforge.__file__).resolve().parent)
    text = table(results)
    print(bench_elementwise.describe(info))
    print(text)
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    out = args.out or bench_elementwise.RESULTS / f"step-overhead-cpu{info['cpus']}-{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "repeats": args.repeats, "results": results,
                               "table": text}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
