"""What this machine's memory can really move: a STREAM-style probe (copy, scale, add, triad).

"% of bandwidth" is only meaningful against a limit that is one. A single copy kernel timed at
the benchmark's own size is not: at sizes that fit the last-level cache it measures the
cache, and the same copy jumped between 25 and 55 GB/s from one size to the next on this
CPU. This probe times the four STREAM kernels (McCalpin) with all numba threads at sizes from
inside the caches to well past them, counts bytes as STREAM does (copy/scale: 2 arrays of
float32 per element, add/triad: 3), and reports the sustained DRAM figure as the median over
the sizes at least 4x the last-level cache.

Usage: python benchmarks/bandwidth.py [--max-mib 1024] [--repeats 11]
Writes benchmarks/results/bandwidth-<machine>.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import numba
import numpy as np

RESULTS = Path(__file__).with_name("results")


@numba.njit(parallel=True, cache=True)
def _copy(a, c):
    for i in numba.prange(a.shape[0]):
        c[i] = a[i]


@numba.njit(parallel=True, cache=True)
def _scale(c, b, s):
    for i in numba.prange(c.shape[0]):
        b[i] = s * c[i]


@numba.njit(parallel=True, cache=True)
def _add(a, b, c):
    for i in numba.prange(a.shape[0]):
        c[i] = a[i] + b[i]


@numba.njit(parallel=True, cache=True)
def _triad(b, c, a, s):
    for i in numba.prange(b.shape[0]):
        a[i] = b[i] + s * c[i]


@numba.njit(parallel=True, cache=True)
def _update(a, b, s):
    for i in numba.prange(a.shape[0]):
        a[i] = a[i] + s * b[i]


# kernel -> (call on arrays a, b, c; float32 arrays it touches per element). STREAM's
# kernels write a fresh array: the CPU first reads each written line (write-allocate),
# a transfer STREAM does not count. An optimizer step writes only what it has read (p,
# m, v in place), so "update" (a += s b: two reads, one in-place write) is the limit
# such a step can reach; copy/triad report lower figures for the same memory.
KERNELS = {
    "copy": (lambda a, b, c: _copy(a, c), 2),
    "scale": (lambda a, b, c: _scale(c, b, np.float32(3.0)), 2),
    "add": (lambda a, b, c: _add(a, b, c), 3),
    "triad": (lambda a, b, c: _triad(b, c, a, np.float32(3.0)), 3),
    "update": (lambda a, b, c: _update(a, b, np.float32(1e-30)), 3),
}


def last_level_cache_bytes() -> int:
    """The largest cache's size from sysfs (32 MiB if it cannot be read)."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        m = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if m:
            sizes.append(int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20,
                                            "G": 1 << 30}[m.group(2)])
    return max(sizes, default=32 << 20)


def probe(n: int, repeats: int) -> dict[str, float]:
    """kernel -> GB/s of the fastest of ``repeats`` timed calls on arrays of ``n`` float32:
    STREAM's "best rate", since a limit is what the machine can do, and a busy neighbour
    only ever makes a call slower."""
    a, b, c = (np.full(n, v, np.float32) for v in (1.0, 2.0, 0.0))
    out = {}
    for name, (call, arrays) in KERNELS.items():
        call(a, b, c)  # compile / fault the pages in
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(a, b, c)
            times.append(time.perf_counter() - start)
        out[name] = arrays * 4 * n / min(times) / 1e9
    return out


def measure(max_mib: int = 1024, repeats: int = 11) -> dict:
    """GB/s per kernel per size, and the sustained (past-the-cache) median per kernel."""
    llc = last_level_cache_bytes()
    sizes, mib = [], 1
    while mib <= max_mib:  # per-array size
        sizes.append(mib << 20)
        mib *= 2
    rows = [{"array_bytes": s, **probe(s // 4, repeats)} for s in sizes]
    dram = [r for r in rows if r["array_bytes"] >= 4 * llc] or rows[-1:]
    sustained = {k: statistics.median(r[k] for r in dram) for k in KERNELS}
    return {"threads": numba.get_num_threads(), "cpus": os.cpu_count(),
            "last_level_cache_bytes": llc, "rows": rows, "sustained_gb_per_s": sustained,
            "sustained_from_sizes": [r["array_bytes"] for r in dram]}


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    mib = [r["array_bytes"] / (1 << 20) for r in result["rows"]]
    for k in KERNELS:
        ax.plot(mib, [r[k] for r in result["rows"]], marker="o", label=k)
    ax.axvline(result["last_level_cache_bytes"] / (1 << 20), color="grey", ls="--",
               label="last-level cache")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("size of one array (MiB)")
    ax.set_ylabel("GB/s")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    result = measure(args.max_mib, args.repeats)
    print(f"{'MiB/array':>10} " + " ".join(f"{k:>8}" for k in KERNELS))
    for r in result["rows"]:
        print(f"{r['array_bytes'] >> 20:>10} " + " ".join(f"{r[k]:8.1f}" for k in KERNELS))
    sus = result["sustained_gb_per_s"]
    print("sustained (GB/s, arrays >= 4x LLC): " + ", ".join(f"{k} {v:.1f}" for k, v in sus.items()))
    RESULTS.mkdir(exist_ok=True)
    model = "cpu"
    try:
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    slug = re.sub(r"\W+", "-", model).strip("-").lower()
    stem = RESULTS / f"bandwidth-cpu{os.cpu_count()}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": model, **result}, indent=1))
    plot(result, stem.with_suffix(".png"),
         f"STREAM-style bandwidth, {model}, {result['threads']} numba threads, float32")
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
