"""Matrix operations on 2-D parameters (Muon, Shampoo, K-FAC ...).

Like reductions, these are DSL nodes the current compiler recognises and
rejects with a clear error; the matrix-stage compiler will lower them.
"""
from __future__ import annotations

import sympy as sp


class MatrixOp(sp.Function):
    """A node that mixes rows and columns of a 2-D tensor."""

    is_real = True


class matmul(MatrixOp):  # noqa: N801
    """Matrix product of two 2-D tensors."""

    nargs = 2


class transpose(MatrixOp):  # noqa: N801
    """Transpose of a 2-D tensor."""

    nargs = 1


class orthogonalize(MatrixOp):  # noqa: N801
    """Newton-Schulz orthogonalization (Muon)."""

    nargs = 1
