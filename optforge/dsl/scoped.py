"""Scoped states: optimizer state with one value per tensor, row, column, group or optimizer.

``state(name, scope="row")`` declares a state that is not one value per element: one
value per parameter tensor (``"tensor"``: NAdam's ``mu_product``, kept as a 0-d tensor as
torch keeps it), per row or per column of the tensor's ``(shape[0], -1)`` view (``"row"``,
``"col"``: Adafactor's factored second moments, rows + cols values instead of rows x cols),
or one value shared by every tensor of the param group or of the optimizer (``"group"``,
``"optimizer"``: Prodigy's ``d``). Reading one gives a ``ScopedState`` node: a value the
same over its scope, broadcast wherever it is used, as a reduction result is. Its new
value must be made from reductions over the same or a coarser scope, scalar math and
other scoped states (never a per-element value): ``variation`` says how finely an
expression varies, and the validator compares it with the state's scope.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .reductions import SCOPES, Reduction
from .symbols import (STATE_DTYPES, HyperSymbol, StateDecl, TensorSymbol, _init_expr,
                      check_name, declare)

STATE_SCOPES = ("element",) + SCOPES  # element, tensor, row, col, group, optimizer


class ScopedState(sp.Function):
    """The current value of a scoped state: ``args = (Symbol(name), scope index)``."""

    nargs = 2
    is_real = True
    is_scoped_state = True  # checked where importing this module would be circular
    is_number = False  # (no free symbols of a known kind: not a SymPy number)

    @property
    def name(self) -> str:
        return self.args[0].name

    @property
    def scope(self) -> str:
        return SCOPES[int(self.args[1])]

    @property
    def free_symbols(self):  # the name is a label, not a symbol of the rule
        return set()

    def _sympystr(self, printer):
        return self.name

    def _latex(self, printer, exp=None):
        text = r"\mathrm{" + self.name.replace("_", r"\_") + "}"
        return text if exp is None else rf"{text}^{{{exp}}}"


def scoped_state(name: str, scope: str) -> ScopedState:
    return ScopedState(sp.Symbol(name), sp.Integer(SCOPES.index(scope)))


def declare_scoped(rule: str, name: str, init, dtype: str | None, scope: str) -> ScopedState:
    """``state(name, init, dtype, scope)`` for a scope other than "element"."""
    check_name(name, "state")
    if scope not in STATE_SCOPES:
        raise DSLError(f"rule {rule!r}: state {name!r} has scope {scope!r}; scopes are "
                       f"{STATE_SCOPES}")
    if dtype is not None and dtype not in STATE_DTYPES:
        raise DSLError(f"rule {rule!r}: state {name!r} has dtype {dtype!r}; "
                       f"supported storage dtypes are {STATE_DTYPES} or None (the parameter's)")
    init_expr = _init_expr(rule, name, init)
    bad = sorted((s for s in init_expr.free_symbols if not isinstance(s, HyperSymbol)), key=str)
    if bad or init_expr.has(Reduction):
        raise DSLError(f"rule {rule!r}: state {name!r} (scope {scope!r}) has init {init_expr}; "
                       "a scoped state starts at a number or a hyperparameter")
    declare(StateDecl(name, init_expr, dtype, kind="scoped", scope=scope))
    return scoped_state(name, scope)


def has_scoped_state(e: sp.Basic) -> bool:
    return any(isinstance(n, ScopedState) for n in sp.preorder_traversal(e))


# How finely a value varies: each kind is constant over the scopes coarser than it.
# A value varying with rows and columns both varies per element.
_VARIES = {"tensor": {"tensor"}, "row": {"tensor", "row"}, "col": {"tensor", "col"},
           "group": set(), "optimizer": set()}
# what a state of each scope may be written from (the kinds of variation it can hold)
_ALLOWED = {"tensor": {"tensor"}, "row": {"tensor", "row"}, "col": {"tensor", "col"},
            "group": set(), "optimizer": set()}


def variation(e: sp.Basic) -> set[str] | None:
    """What ``e`` varies with: a subset of {"tensor", "row", "col"} ("tensor": it differs
    from one tensor to the next; an empty set: the same for the whole group), or None when
    it varies per element (it reads a tensor outside any reduction)."""
    if isinstance(e, TensorSymbol):
        return None
    if isinstance(e, ScopedState):
        return set(_VARIES[e.scope])
    if isinstance(e, Reduction):  # numel/ndim over a group are group values too
        scope = e.scope if len(e.args) > 1 or e.scope in ("group", "optimizer") else "tensor"
        return set(_VARIES[scope])
    out: set[str] = set()
    for a in e.args:
        inner = variation(a)
        if inner is None:
            return None
        out |= inner
    return out


def write_problem(scope: str, e: sp.Expr) -> str | None:
    """Why ``e`` cannot be the new value of a state of ``scope`` (None: it can)."""
    found = variation(e)
    if found is None:
        return (f"a {scope}-scoped state's new value must be made from reductions (sum, "
                "mean, amax... over the same or a coarser scope), scalar math and other "
                "scoped states, but it varies per element")
    extra = found - _ALLOWED[scope]
    if {"row", "col"} <= found:
        extra |= {"row and col"}
    if extra:
        return (f"a {scope}-scoped state's new value may vary only as finely as its scope, "
                f"but it varies per {', '.join(sorted(extra))}")
    return None
