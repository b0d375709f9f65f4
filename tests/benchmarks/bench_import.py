"""The benchmark scripts (benchmarks/*.py are scripts, not a package) imported by the tests
that run them on tiny inputs, without leaving their folder on sys.path."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def benchmark_modules(*names: str) -> tuple:
    """The modules ``benchmarks/<name>.py``, in order (a script that adds the folder to
    sys.path itself, as bench_multistage does, is undone too)."""
    saved = list(sys.path)
    sys.path.insert(0, str(BENCH))
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path[:] = saved
