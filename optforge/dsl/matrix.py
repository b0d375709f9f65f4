"""Matrix operations on 2-D parameters (Muon; Shampoo, K-FAC ... later).

``orthogonalize`` is lowered to a *matrix stage*: its argument is computed
elementwise into a buffer, the Newton-Schulz iteration runs on it (torch matmuls:
BLAS on CPU, cuBLAS on GPU), and the elementwise stage reads the result like any
other tensor. Parameters with more than two dimensions are viewed as
``(shape[0], -1)``; 0-D and 1-D parameters are refused with an error naming them.
``matmul`` and ``transpose`` are declared for rules to come and are refused by
validation until their stages exist.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .functions import _expr
from .symbols import _current_rule_name, is_tensor_expr

MATRIX_DTYPES = ("bfloat16", "float32")


class MatrixOp(sp.Function):
    """A node that mixes rows and columns of a 2-D tensor."""

    is_real = True


class matmul(MatrixOp):  # noqa: N801
    """Matrix product of two 2-D tensors."""

    nargs = 2


class transpose(MatrixOp):  # noqa: N801
    """Transpose of a 2-D tensor."""

    nargs = 1


class Orthogonalize(MatrixOp):
    """Newton-Schulz orthogonalization: args (x, steps, a, b, c, eps, dtype index)."""

    nargs = 7

    @property
    def dtype(self) -> str:
        return MATRIX_DTYPES[int(self.args[6])]

    def _sympystr(self, printer):
        return f"orthogonalize({printer._print(self.args[0])})"

    def _latex(self, printer, exp=None):
        text = rf"\operatorname{{orth}}\left({printer._print(self.args[0])}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def orthogonalize(x, steps=5, coeffs=(3.4445, -4.7750, 2.0315), eps=1e-7, dtype="bfloat16"):
    """The Newton-Schulz quintic iteration of Muon (Jordan et al. 2024): ``x`` scaled to
    unit Frobenius norm, then ``steps`` of ``X <- a X + (b A + c A^2) X`` with
    ``A = X X^T`` (on the wide orientation), in ``dtype``. ``steps``, ``coeffs`` and
    ``eps`` may be hyperparameters (run-time values)."""
    rule = _current_rule_name()
    e = _expr(x, "orthogonalize", "x")
    if not is_tensor_expr(e):
        raise DSLError(f"rule {rule!r}: orthogonalize({e}) of a scalar")
    if dtype not in MATRIX_DTYPES:
        raise DSLError(f"rule {rule!r}: orthogonalize(..., dtype={dtype!r}): supported "
                       f"{MATRIX_DTYPES}")
    if len(coeffs) != 3:
        raise DSLError(f"rule {rule!r}: orthogonalize needs 3 coefficients, got {coeffs!r}")
    scalars = [_expr(v, "orthogonalize", name) for v, name in
               zip((steps, *coeffs, eps), ("steps", "a", "b", "c", "eps"))]
    for v in scalars:
        if is_tensor_expr(v):
            raise DSLError(f"rule {rule!r}: orthogonalize parameter {v} must be a scalar")
    return Orthogonalize(e, *scalars, sp.Integer(MATRIX_DTYPES.index(dtype)))
