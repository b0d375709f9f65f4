"""What staging a strided parameter costs (runtime/staging.py), on the numba backend.

    python benchmarks/bench_staging.py

AdamW on a 4.2M-element conv weight: dense; channels_last with a channels_last grad read
natively (the numba kernel walks the shared permuted layout) against the same tensors
forced through staging (dense copies, written back); and a non-dense view
(``base[..., 0]``), which no kernel can address, so it is always staged. Medians of 30
steps after one warm-up step.
"""
from __future__ import annotations

import statistics
import time

import torch

import optforge
from optforge.runtime import staging

SHAPE = (256, 256, 8, 8)


def median_ms(p: torch.Tensor, grad: torch.Tensor, steps: int = 30) -> float:
    opt = optforge.AdamW([p], backend="numba")
    p.grad = grad
    opt.step()  # compile, create states
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def forced_staging(p: torch.Tensor, grad: torch.Tensor) -> float:
    """The channels_last case with the native permuted path switched off."""
    original = staging.Staged.__init__

    def contiguous_only(self, inner, permuted_ok):
        original(self, inner, False)
    staging.Staged.__init__ = contiguous_only
    try:
        return median_ms(p, grad)
    finally:
        staging.Staged.__init__ = original


def main() -> None:
    torch.manual_seed(0)
    cl = torch.randn(SHAPE).to(memory_format=torch.channels_last)
    cl_grad = torch.randn_like(cl)
    dense = median_ms(torch.randn(SHAPE).requires_grad_(), torch.randn(SHAPE))
    native = median_ms(cl.clone().requires_grad_(), cl_grad)
    staged = forced_staging(cl.clone().requires_grad_(), cl_grad)
    view = torch.randn(SHAPE[0] * SHAPE[1], 64, 2)[..., 0].requires_grad_()
    view_ms = median_ms(view, torch.randn(view.shape))
    print(f"AdamW, numba, {torch.Size(SHAPE).numel() / 1e6:.1f}M elements, median of 30 steps")
    print(f"  dense parameter                    {dense:8.2f} ms")
    print(f"  channels_last, native permuted     {native:8.2f} ms")
    print(f"  channels_last, staged (forced)     {staged:8.2f} ms")
    print(f"  view [..., 0], staged (always)     {view_ms:8.2f} ms")


if __name__ == "__main__":
    main()
