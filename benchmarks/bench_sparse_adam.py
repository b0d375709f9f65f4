"""SparseAdam on a sparse embedding: optforge (lazy sparse staging, numba and torch
backends) against torch.optim.SparseAdam.

    python benchmarks/bench_sparse_adam.py [rows] [dim] [batch]

One ``nn.Embedding(rows, dim, sparse=True)`` weight; each step's gradient holds the rows
of a random batch of ``batch`` indices (with repeats, coalesced by both). Medians of 20
steps after two warm-up steps; the gradient is made once and reused, so the numbers are
the optimizer's step alone. Each variant's final weight is compared with torch's (the
relative difference is printed and returned: it must stay at float32 rounding).
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

import optforge


def median_ms(make, weight: torch.Tensor, grad: torch.Tensor,
              steps: int = 20) -> tuple[float, torch.Tensor]:
    """(median ms per step, the weight after all steps)."""
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
    return statistics.median(times) * 1e3, p.detach()


def main(rows: int = 200_000, dim: int = 64, batch: int = 4096) -> dict[str, float]:
    """Prints the table; returns each optforge variant's relative difference from torch."""
    torch.manual_seed(0)
    weight = torch.randn(rows, dim)
    index = torch.randint(0, rows, (1, batch))
    grad = torch.sparse_coo_tensor(index, torch.randn(batch, dim), (rows, dim),
                                   check_invariants=True)
    print(f"SparseAdam, {rows} x {dim} embedding ({rows * dim / 1e6:.1f}M elements), "
          f"{batch} indices a step, median of 20 steps")
    reference = None
    differences = {}
    for label, make in [
        ("torch.optim.SparseAdam", lambda ps: torch.optim.SparseAdam(ps, lr=1e-3)),
        ("optforge, numba", lambda ps: optforge.SparseAdam(ps, lr=1e-3, backend="numba")),
        ("optforge, torch", lambda ps: optforge.SparseAdam(ps, lr=1e-3, backend="torch")),
    ]:
        ms, final = median_ms(make, weight, grad)
        if reference is None:
            reference, note = final, ""
        else:
            differences[label] = ((final - reference).norm() / reference.norm()).item()
            note = f"  (rel. difference from torch {differences[label]:.1e})"
        print(f"  {label:24s} {ms:8.3f} ms{note}")
    return differences


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
