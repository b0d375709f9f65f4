"""SparseAdam on a sparse embedding: optforge (lazy sparse staging, numba and torch
backends) against torch.optim.SparseAdam.

    python benchmarks/bench_sparse_adam.py [rows] [dim] [batch]

One ``nn.Embedding(rows, dim, sparse=True)`` weight; each step's gradient holds the rows
of a random batch of ``batch`` indices (with repeats, coalesced by both). Medians of 20
steps after two warm-up steps; the gradient is made once and reused, so the numbers are
the optimizer's step alone.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

import optforge


def median_ms(make, weight: torch.Tensor, grad: torch.Tensor, steps: int = 20) -> float:
    p = torch.nn.Parameter(weight.clone())
    opt = make([p])
    p.grad = grad
    for _ in range(2):  # compile, create states
        opt.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(rows: int = 200_000, dim: int = 64, batch: int = 4096) -> None:
    torch.manual_seed(0)
    weight = torch.randn(rows, dim)
    index = torch.randint(0, rows, (1, batch))
    grad = torch.sparse_coo_tensor(index, torch.randn(batch, dim), (rows, dim),
                                   check_invariants=True)
    print(f"SparseAdam, {rows} x {dim} embedding ({rows * dim / 1e6:.1f}M elements), "
          f"{batch} indices a step, median of 20 steps")
    for label, make in [
        ("torch.optim.SparseAdam", lambda ps: torch.optim.SparseAdam(ps, lr=1e-3)),
        ("optforge, numba", lambda ps: optforge.SparseAdam(ps, lr=1e-3, backend="numba")),
        ("optforge, torch", lambda ps: optforge.SparseAdam(ps, lr=1e-3, backend="torch")),
    ]:
        print(f"  {label:24s} {median_ms(make, weight, grad):8.3f} ms")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
