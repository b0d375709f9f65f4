"""Hand-written matrix kernels that matrix stages call (torch matmuls: BLAS / cuBLAS)."""
from __future__ import annotations

import torch

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def as_matrix(x: torch.Tensor, what: str) -> torch.Tensor:
    """The 2-D view a matrix stage works on: ``(shape[0], -1)`` for ndim >= 2."""
    if x.dim() < 2:
        raise ValueError(f"{what} needs a parameter with at least 2 dimensions, got shape "
                         f"{tuple(x.shape)} (give 0-D and 1-D parameters an elementwise rule "
                         "in another optimizer or param group)")
    return x.reshape(x.shape[0], -1)


def orthogonalize(x: torch.Tensor, steps: float, a: float, b: float, c: float, eps: float,
                  dtype: str = "bfloat16") -> torch.Tensor:
    """Newton-Schulz quintic iteration towards the orthogonal factor of ``x`` (Muon).

    Works on the wide orientation (rows <= columns) so the Gram matrix is the small one;
    the result has ``x``'s shape, in float32.
    """
    steps = int(steps)
    if not 0 <= steps < 100:
        raise ValueError(f"orthogonalize: steps must be in [0, 100), got {steps}")
    m = as_matrix(x, "orthogonalize").to(_DTYPES[dtype])
    tall = m.shape[0] > m.shape[1]
    if tall:
        m = m.T
    m = m / m.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = m @ m.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        m = torch.addmm(m, poly, m, beta=a)  # a X + (b A + c A^2) X
    if tall:
        m = m.T
    return m.reshape(x.shape).to(torch.float32)
