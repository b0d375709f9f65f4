"""Reductions: norms, dot products, sums, means, maxima and counts.

Every user-facing reduction is built from three primitive nodes, so the compiler
and each backend handle exactly these:

* ``ReduceSum(x, scope)`` and ``ReduceMax(x, scope)`` over an elementwise expression;
* ``Numel(scope)``: how many elements the scope holds (known without reading memory);
  ``NDim``: the tensor's number of dimensions.

The scope says what is reduced: ``"tensor"`` (the whole parameter tensor),
``"row"`` (per output channel: the tensor viewed as ``(shape[0], -1)``, one value
per row, as AdamP's channel view), ``"col"`` (one value per column of that view) or
``"group"`` (every tensor of the param group together) or ``"optimizer"`` (every
tensor of every param group of the optimizer, and of every rank for sharded
parameters: global-norm clipping as ``torch.nn.utils.clip_grad_norm_`` computes it).
A reduction's value is the same for every element of its scope; math on it (the
square root of a norm, a trust ratio) runs once per scope, not once per element.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .functions import _expr, abs as _abs, sqrt, where
from .symbols import _current_rule_name, is_tensor_expr

SCOPES = ("tensor", "row", "col", "group", "optimizer")


class Reduction(sp.Function):
    """A node whose value depends on many elements; ``args[-1]`` is the scope index."""

    is_real = True
    is_reduction = True  # checked where importing this module would be circular
    # numel() has no free symbols, but it is not a constant: without this SymPy treats
    # it as a number and refuses it in Max/Min ("not comparable") or tries to evaluate it
    is_number = False

    @property
    def scope(self) -> str:
        return SCOPES[int(self.args[-1])]


    def _sympystr(self, printer):
        inner = ", ".join(printer._print(a) for a in self.args[:-1])
        return f"{self._label}_{self.scope}({inner})"

    def _latex(self, printer, exp=None):
        inner = "".join(printer._print(a) for a in self.args[:-1])
        text = rf"{self._latex_op}_{{\mathrm{{{self.scope}}}}}\left({inner}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


class ReduceSum(Reduction):
    """Sum of an elementwise expression over a scope (float32 accumulation)."""

    nargs = 2
    _label, _latex_op = "sum", r"\sum"


class ReduceMax(Reduction):
    """Maximum of an elementwise expression over a scope."""

    nargs = 2
    _label, _latex_op = "max", r"\max"


class Numel(Reduction):
    """Number of elements in a scope."""

    nargs = 1
    is_positive = True
    _label, _latex_op = "numel", r"\mathrm{numel}"

    def _latex(self, printer, exp=None):
        text = rf"n_{{\mathrm{{{self.scope}}}}}"
        return text if exp is None else rf"{text}^{{{exp}}}"


class NDim(Reduction):
    """The parameter tensor's number of dimensions (AdamP projects only when > 1)."""

    nargs = 1
    is_nonnegative = True
    _label, _latex_op = "ndim", r"\mathrm{ndim}"

    def _latex(self, printer, exp=None):
        return r"\mathrm{ndim}(p)" + ("" if exp is None else rf"^{{{exp}}}")


def _scope(over: str, fn: str) -> sp.Integer:
    if over not in SCOPES:
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}(..., over={over!r}): over must "
                       f"be one of {SCOPES}")
    return sp.Integer(SCOPES.index(over))


def _tensor_arg(x, fn: str) -> sp.Expr:
    e = _expr(x, fn, "x")
    # a row- or column-scoped state (dsl/scoped.py) varies within the tensor: reducible
    if not is_tensor_expr(e) and not any(getattr(n, "is_scoped_state", False)
                                         for n in sp.preorder_traversal(e)):
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}({e}) reduces a scalar; a "
                       "reduction's argument must involve param(), grad() or a state")
    return e


def total(x, over: str = "tensor"):
    """Sum of the elements of ``x`` (``sum`` in the DSL namespace)."""
    return ReduceSum(_tensor_arg(x, "sum"), _scope(over, "sum"))


def numel(over: str = "tensor"):
    """The number of elements reduced over ``over``."""
    return Numel(_scope(over, "numel"))


def ndim():
    """The number of dimensions of the parameter tensor (0 for a scalar parameter)."""
    return NDim(sp.Integer(0))


def mean(x, over: str = "tensor"):
    """Mean of the elements of ``x``."""
    return ReduceSum(_tensor_arg(x, "mean"), _scope(over, "mean")) / numel(over)


def amax(x, over: str = "tensor"):
    """Largest element of ``x``."""
    return ReduceMax(_tensor_arg(x, "amax"), _scope(over, "amax"))


def dot(x, y, over: str = "tensor"):
    """Sum of the elementwise product of ``x`` and ``y``."""
    return ReduceSum(_tensor_arg(_expr(x, "dot", "x") * _expr(y, "dot", "y"), "dot"),
                     _scope(over, "dot"))


def norm(x, ord=2, over: str = "tensor"):  # noqa: A002 - torch's name
    """The ``ord``-norm of ``x``: ord 1, 2 or ``float('inf')``."""
    e = _tensor_arg(x, "norm")
    if ord == 2:
        return sqrt(ReduceSum(e * e, _scope(over, "norm")))
    if ord == 1:
        return ReduceSum(_abs(e), _scope(over, "norm"))
    if ord in (float("inf"), sp.oo):
        return ReduceMax(_abs(e), _scope(over, "norm"))
    raise DSLError(f"rule {_current_rule_name()!r}: norm(..., ord={ord!r}): supported orders "
                   "are 1, 2 and float('inf')")


def count(cond, over: str = "tensor"):
    """How many elements satisfy the comparison ``cond`` (e.g. ``count(u * g > 0)``)."""
    return ReduceSum(where(cond, 1, 0), _scope(over, "count"))
