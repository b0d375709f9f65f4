"""Before/after: one benchmark script run on two checkouts of optforge, side by side.

A refactor must not slow the steps down. Absolute times on a shared machine drift by more
than the change being measured, so this runs the benchmark of each checkout in turn,
``--rounds`` times, alternating (base, head, base, head, ...), and compares what each run
measures against torch *in that same run*: optforge's time over torch's fused (or best)
time per case (else the fastest reference in that run). The table gives each checkout's median ratio and head/base; a head/base
within the rounds' spread is noise.

Each checkout runs its own copy of the benchmark script with its own package first on
PYTHONPATH (same interpreter, same torch). Results: benchmarks/results/compare-<bench>.json.

Usage:
  python benchmarks/compare_checkouts.py --base ../optforge-old [--bench bench_elementwise.py]
         [--rounds 2] [-- extra args for the benchmark, e.g. --quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PREFIX = {"bench_elementwise.py": "elementwise", "bench_multistage.py": "multistage"}


def run_once(checkout: Path, bench: str, extra: list[str], into: Path) -> dict:
    """Run ``checkout``'s copy of ``bench`` and return the JSON it wrote (moved to ``into``)."""
    results = checkout / "benchmarks" / "results"
    before = {p: p.stat().st_mtime for p in results.glob(f"{PREFIX[bench]}-*.json")}
    env = dict(os.environ, PYTHONPATH=str(checkout))
    subprocess.run([sys.executable, str(checkout / "benchmarks" / bench), *extra],
                   env=env, cwd=checkout, check=True)
    written = [p for p in results.glob(f"{PREFIX[bench]}-*.json")
               if before.get(p) != p.stat().st_mtime]
    if len(written) != 1:
        raise RuntimeError(f"{bench} in {checkout} wrote {len(written)} result files, "
                           "expected one")
    kept = into / f"{checkout.name}-{len(list(into.iterdir()))}.json"
    shutil.copy(written[0], kept)
    return json.loads(kept.read_text())


def ratios(run: dict) -> dict[str, float]:
    """Per case: optforge's time over torch's fused time (else the best reference variant:
    torch's foreach/loop, pytorch-optimizer's implementations)."""
    out = {}
    for r in run["results"]:
        ms = r["ms"]
        ours = [v for k, v in ms.items() if k.startswith("optforge")]
        references = [v for k, v in ms.items() if not k.startswith("optforge") and k != "copy"]
        theirs = ms.get("torch-fused") or min(references)
        key = f"{r.get('rule', r.get('name', '?'))} {r.get('case', r.get('numel'))}"
        out[key] = min(ours) / theirs
    return out


def table(base: list[dict], head: list[dict]) -> tuple[str, list[dict]]:
    rows, lines = [], [f"{'case':<28}{'base t/torch':>14}{'head t/torch':>14}{'head/base':>11}"
                       f"  spread (head rounds)"]
    for key in ratios(base[0]):
        b = [ratios(r)[key] for r in base]
        h = [ratios(r)[key] for r in head if key in ratios(r)]
        mb, mh = statistics.median(b), statistics.median(h)
        rows.append({"case": key, "base": b, "head": h, "head_over_base": mh / mb})
        lines.append(f"{key:<28}{mb:>14.3f}{mh:>14.3f}{mh / mb:>11.3f}"
                     f"  {min(h):.3f}-{max(h):.3f}")
    return "\n".join(lines), rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the older checkout")
    ap.add_argument("--head", type=Path, default=HERE.parent, help="default: this checkout")
    ap.add_argument("--bench", default="bench_elementwise.py", choices=sorted(PREFIX))
    ap.add_argument("--rounds", type=int, default=2)
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    base_runs, head_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            base_runs.append(run_once(args.base.resolve(), args.bench, extra, Path(tmp)))
            head_runs.append(run_once(args.head.resolve(), args.bench, extra, Path(tmp)))
    text, rows = table(base_runs, head_runs)
    print(f"\n{args.bench}: optforge time / torch time, base {args.base} vs head {args.head}, "
          f"{args.rounds} alternating rounds {' '.join(extra)}")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compare-{PREFIX[args.bench]}.json"
    out.write_text(json.dumps({"base": str(args.base), "head": str(args.head),
                               "bench": args.bench, "extra": extra, "rounds": args.rounds,
                               "table": text, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
