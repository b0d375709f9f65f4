"""Matrix operations: Muon, Shampoo, SOAP, K-FAC, MKOR, AdaFisher, ScaledGD...

Inside a matrix operation, every parameter-shaped tensor (``param()``, ``grad()``,
states, inputs and elementwise expressions of them) is its 2-D view ``(rows, cols)`` =
``(shape[0], numel / shape[0])`` (a conv kernel ``(out, in, kh, kw)`` is
``(out, in*kh*kw)``). ``+ - * /``, powers and the elementwise functions act elementwise
with broadcasting (scalars, ``(n, 1)`` columns); ``matmul`` is the matrix product.

The compiler cuts every outermost matrix operation of the update out of the
elementwise stage into a *matrix stage* (torch matmul / linalg: BLAS on CPU, cuBLAS on
GPU); its ``(rows, cols)`` (or scalar) result is read back by the fused elementwise
kernel as a tensor shaped like the parameter. Matrix-shaped states (``matrix_state``:
Kronecker factors, inverse roots, eigenbases) are computed in the matrix stage from the
values before the step, like every state. ``every(k, value, otherwise)`` recomputes an
expensive value only every k steps. Shapes are checked when the rule is built
(``matrix_shapes``), so a mismatch names the expression, not a torch error.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .functions import _expr, eq, where
from .symbols import (STATE_DTYPES, HyperSymbol, InputSymbol, StateDecl, StateSymbol,
                      StepSymbol, _current_rule_name, active_context, check_name, declare,
                      is_tensor_expr)

MATRIX_DTYPES = ("bfloat16", "float32")
INV_ROOT_METHODS = ("eigh", "newton")
DIMS = ("rows", "cols", "batch", 1)


class MatrixOp(sp.Function):
    """A node that mixes rows and columns; ``fn`` names its kernel in kernels/matrix.py."""

    is_real = True
    fn = ""
    n_matrix_args = 1  # leading args that are matrices; the rest are scalar parameters

    def _sympystr(self, printer):
        args = ", ".join(printer._print(a) for a in self.args)
        return f"{self.fn}({args})"

    def _latex(self, printer, exp=None):
        args = ", ".join(printer._print(a) for a in self.args[:self.n_matrix_args])
        name = self.fn.replace("_", "\\_")
        text = rf"\operatorname{{{name}}}\left({args}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def _op(name: str, fn: str, nargs: int, matrices: int, doc: str):
    return type(name, (MatrixOp,), {"nargs": nargs, "fn": fn, "n_matrix_args": matrices,
                                    "__doc__": doc, "__module__": __name__})


MatMul = _op("MatMul", "matmul", 2, 2, "Matrix product.")
Transpose = _op("Transpose", "transpose", 1, 1, "Transpose.")
InvRoot = _op("InvRoot", "inv_root", 4, 1,
              "(A + eps I)^(-1/p) of a symmetric PSD A: (A, p, eps, method).")
Inverse = _op("Inverse", "inverse", 2, 1, "(A + damping I)^-1 of a symmetric PD A.")
Solve = _op("Solve", "solve", 2, 2, "A^-1 B.")
ShermanMorrison = _op("ShermanMorrison", "sherman_morrison", 3, 3,
                      "(A + u v^T)^-1 from A^-1: (Ainv, u, v).")
Eigenvectors = _op("Eigenvectors", "eigenvectors", 1, 1,
                   "Orthonormal eigenvectors of a symmetric matrix.")
PowerIteration = _op("PowerIteration", "power_iteration", 2, 2,
                     "Q of QR(A Q): one refresh of an eigenbasis.")
AddDiagonal = _op("AddDiagonal", "add_diagonal", 2, 1, "A + lam I.")
Diagonal = _op("Diagonal", "diagonal", 1, 1, "The diagonal of a square matrix, (n, 1).")
Trace = _op("Trace", "trace", 1, 1, "Sum of the diagonal (a scalar).")
FNorm = _op("FNorm", "fnorm", 1, 1, "Frobenius norm (a scalar).")
BatchMean = _op("BatchMean", "batch_mean", 1, 1, "Mean over the rows of (batch, n): (n, 1).")
BatchSize = _op("BatchSize", "batch_size", 1, 1, "Number of rows of (batch, n), a scalar.")
Every = _op("Every", "every", 4, 0, "(t, k, value, otherwise): value on steps 1, 1+k...")


def _every_latex(self, printer, exp=None):
    # all four arguments are part of the meaning (matrix ops print only their matrices)
    t, k, value, otherwise = (printer._print(a) for a in self.args)
    text = (rf"\begin{{cases}} {value} & \text{{if }} {t} \equiv 1 \pmod{{{k}}} \\ "
            rf"{otherwise} & \text{{otherwise}} \end{{cases}}")
    return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


Every._latex = _every_latex


class Orthogonalize(MatrixOp):
    """Newton-Schulz orthogonalization: args (x, steps, a, b, c, eps, dtype index)."""

    nargs = 7
    fn = "orthogonalize"

    @property
    def dtype(self) -> str:
        return MATRIX_DTYPES[int(self.args[6])]

    def _sympystr(self, printer):
        return f"orthogonalize({printer._print(self.args[0])})"

    def _latex(self, printer, exp=None):
        text = rf"\operatorname{{orth}}\left({printer._print(self.args[0])}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


class MatrixStateSymbol(StateSymbol):
    """A matrix-shaped state (a Kronecker factor, an inverse root, an eigenbasis)."""


def _tensor(x, fn: str, what: str) -> sp.Expr:
    e = _expr(x, fn, what)
    if not is_tensor_expr(e):
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}({what}={e}) needs a tensor, "
                       "got a scalar")
    return e


def _scalar(x, fn: str, what: str) -> sp.Expr:
    e = _expr(x, fn, what)
    if is_tensor_expr(e):
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}: {what} = {e} must be a "
                       "scalar (a number or a hyperparameter)")
    return e


def matmul(a, b):
    """Matrix product ``a @ b``."""
    return MatMul(_tensor(a, "matmul", "a"), _tensor(b, "matmul", "b"))


def transpose(a):
    """``a^T``."""
    return Transpose(_tensor(a, "transpose", "a"))


def inv_root(a, p, eps=0.0, method="eigh"):
    """``(a + eps I)^(-1/p)`` of a symmetric positive semi-definite ``a`` (Shampoo's
    preconditioner): by eigendecomposition (eigenvalues clamped at 0 first) or by the
    coupled Newton iteration (``method="newton"``, matmuls only)."""
    if method not in INV_ROOT_METHODS:
        raise DSLError(f"rule {_current_rule_name()!r}: inv_root method {method!r}; "
                       f"supported {INV_ROOT_METHODS}")
    return InvRoot(_tensor(a, "inv_root", "a"), _scalar(p, "inv_root", "p"),
                   _scalar(eps, "inv_root", "eps"), sp.Integer(INV_ROOT_METHODS.index(method)))


def inverse(a, damping=0.0):
    """``(a + damping I)^-1`` of a symmetric positive definite ``a`` (Cholesky)."""
    return Inverse(_tensor(a, "inverse", "a"), _scalar(damping, "inverse", "damping"))


def solve(a, b):
    """``a^-1 b`` for a square ``a`` (LU)."""
    return Solve(_tensor(a, "solve", "a"), _tensor(b, "solve", "b"))


def sherman_morrison(a_inv, u, v):
    """``(A + u v^T)^-1`` from ``A^-1`` and columns ``u``, ``v`` (MKOR's rank-1 update)."""
    return ShermanMorrison(*(_tensor(x, "sherman_morrison", n)
                             for x, n in ((a_inv, "a_inv"), (u, "u"), (v, "v"))))


def eigenvectors(a):
    """Orthonormal eigenvectors (columns, ascending eigenvalues) of a symmetric ``a``."""
    return Eigenvectors(_tensor(a, "eigenvectors", "a"))


def power_iteration(a, q):
    """One refresh of an eigenbasis ``q`` of a slowly changing symmetric ``a``: the Q of
    QR(a q) (SOAP's cheap alternative to a fresh eigendecomposition)."""
    return PowerIteration(_tensor(a, "power_iteration", "a"), _tensor(q, "power_iteration", "q"))


def add_diagonal(a, lam):
    """``a + lam I``."""
    return AddDiagonal(_tensor(a, "add_diagonal", "a"), _scalar(lam, "add_diagonal", "lam"))


def diagonal(a):
    """The diagonal of a square ``a`` as an ``(n, 1)`` column."""
    return Diagonal(_tensor(a, "diagonal", "a"))


def trace(a):
    """``tr(a)``, a scalar."""
    return Trace(_tensor(a, "trace", "a"))


def fnorm(x):
    """Frobenius norm of a matrix expression, a scalar."""
    return FNorm(_tensor(x, "fnorm", "x"))


def batch_mean(x):
    """The mean row of a ``(batch, n)`` matrix, as an ``(n, 1)`` column."""
    return BatchMean(_tensor(x, "batch_mean", "x"))


def batch_size(x):
    """The number of rows of a ``(batch, n)`` matrix such as ``layer_input()``."""
    return BatchSize(_tensor(x, "batch_size", "x"))


def every(k, value, otherwise):
    """``value`` on steps 1, 1+k, 1+2k... and ``otherwise`` (typically the state's current
    value) between them; ``value`` is not computed on the other steps.

    With matrix operations (or matrix states) in a branch it is a matrix-stage node;
    otherwise elementwise math: ``where(eq((t - 1) % k, 0), value, otherwise)``, whose
    condition the host evaluates each step (so only the taken branch's scalars are
    computed there)."""
    t, k = StepSymbol("t", positive=True), _interval(k)
    value, otherwise = _expr(value, "every", "value"), _expr(otherwise, "every", "otherwise")
    if not (_has_matrix(value) or _has_matrix(otherwise)):
        return where(eq(sp.Mod(t - 1, k), 0), value, otherwise)
    return Every(t, k, _tensor(value, "every", "value"), _tensor(otherwise, "every", "otherwise"))


def _has_matrix(e: sp.Expr) -> bool:
    return e.has(MatrixOp) or any(isinstance(s, MatrixStateSymbol) for s in e.free_symbols)


def _interval(k) -> sp.Expr:
    """every()'s k: a whole number >= 1, or a hyperparameter (checked by the runtime when
    a group is added or loaded: RuleSpec.interval_keys)."""
    k = _scalar(k, "every", "k")
    if k.is_Number and not (float(k) >= 1 and float(k) == int(float(k))):
        raise DSLError(f"rule {_current_rule_name()!r}: every(k={k}, ...): the interval must "
                       "be a whole number >= 1")
    if isinstance(k, HyperSymbol):
        ctx = active_context()
        if ctx is not None:
            ctx.intervals.add(k.name)
    return k


def matrix_state(name: str, shape=("rows", "rows"), init="identity", scale=1.0,
                 dtype: str = "float32") -> MatrixStateSymbol:
    """Declare a matrix-shaped state; ``shape`` uses "rows", "cols" (of the parameter's 2-D
    view) and 1; ``init`` is "identity" (``scale * I``, square only), "zeros" or a number."""
    rule = _current_rule_name()
    check_name(name, "matrix state")
    shape = tuple(shape)
    if len(shape) != 2 or any(d not in ("rows", "cols", 1) for d in shape):
        raise DSLError(f"rule {rule!r}: matrix state {name!r} has shape {shape}; use two of "
                       "'rows', 'cols', 1")
    if init == "identity" and shape[0] != shape[1]:
        raise DSLError(f"rule {rule!r}: matrix state {name!r}: init='identity' needs a square "
                       f"shape, got {shape}")
    if dtype not in STATE_DTYPES:
        raise DSLError(f"rule {rule!r}: matrix state {name!r} has dtype {dtype!r}; supported "
                       f"{STATE_DTYPES}")
    if init == "identity":
        value = _scalar(scale, "matrix_state", "scale")
    elif init == "zeros":
        value = sp.Integer(0)
    elif isinstance(init, (int, float)) and not isinstance(init, bool) \
            and sp.Float(init).is_finite:
        value = sp.Float(init)
    else:
        raise DSLError(f"rule {rule!r}: matrix state {name!r} has init {init!r}; use "
                       "'identity', 'zeros' or a finite number")
    declare(StateDecl(name, value, dtype, kind="matrix", shape=shape, eye=init == "identity"))
    return MatrixStateSymbol(name, real=True)


def _layer_stat(name: str, cols: str) -> InputSymbol:
    declare(StateDecl(name, sp.Integer(0), "float32", kind="input", shape=("batch", cols)))
    return InputSymbol(name, real=True)


def layer_input():
    """The inputs of the layer that owns the parameter, ``(batch, cols)``: recorded by
    ``optimizer.attach(model)`` on the last forward (conv inputs unfolded to patches)."""
    return _layer_stat("layer_input", "cols")


def layer_output_grad():
    """The gradient of the loss with respect to the layer's outputs, ``(batch, rows)``:
    recorded by ``optimizer.attach(model)`` on the last backward."""
    return _layer_stat("layer_output_grad", "rows")


def orthogonalize(x, steps=5, coeffs=(3.4445, -4.7750, 2.0315), eps=1e-7, dtype="bfloat16"):
    """The Newton-Schulz quintic iteration of Muon (Jordan et al. 2024): ``x`` scaled to
    unit Frobenius norm, then ``steps`` of ``X <- a X + (b A + c A^2) X`` with
    ``A = X X^T`` (on the wide orientation), in ``dtype``. ``steps``, ``coeffs`` and
    ``eps`` may be hyperparameters (run-time values)."""
    rule = _current_rule_name()
    e = _tensor(x, "orthogonalize", "x")
    if dtype not in MATRIX_DTYPES:
        raise DSLError(f"rule {rule!r}: orthogonalize(..., dtype={dtype!r}): supported "
                       f"{MATRIX_DTYPES}")
    if len(coeffs) != 3:
        raise DSLError(f"rule {rule!r}: orthogonalize needs 3 coefficients, got {coeffs!r}")
    scalars = [_scalar(v, "orthogonalize", name) for v, name in
               zip((steps, *coeffs, eps), ("steps", "a", "b", "c", "eps"))]
    return Orthogonalize(e, *scalars, sp.Integer(MATRIX_DTYPES.index(dtype)))
