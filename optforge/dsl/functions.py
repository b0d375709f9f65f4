"""Elementwise functions of the DSL.

Each returns a plain SymPy expression built from a small whitelisted set of node
types (Add, Mul, Pow, Abs, sign, exp, log, Max, Min, Piecewise). Keeping the node
set small is what lets every backend printer support every rule.
"""
from __future__ import annotations

import sympy as sp
from sympy.logic.boolalg import ITE, And, Boolean, Not, Or

from .errors import DSLError
from .symbols import _current_rule_name


def _is_condition(e) -> bool:
    # SymPy's Symbol subclasses Boolean too, so "a Boolean that is not an Expr"
    return isinstance(e, sp.core.relational.Relational) or (
        isinstance(e, Boolean) and not isinstance(e, sp.Expr))


def _expr(x, fn: str, arg: str) -> sp.Expr:
    try:
        e = sp.sympify(x)
    except (sp.SympifyError, TypeError) as exc:
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}() argument {arg}={x!r} "
                       "is not a number or a DSL expression") from exc
    if _is_condition(e):
        raise DSLError(f"rule {_current_rule_name()!r}: {fn}() argument {arg}={e} is a "
                       "comparison; comparisons belong in where(cond, a, b)")
    return e


def sqrt(x):
    """Square root."""
    return sp.sqrt(_expr(x, "sqrt", "x"))


def rsqrt(x):
    """Reciprocal square root 1/sqrt(x)."""
    return 1 / sp.sqrt(_expr(x, "rsqrt", "x"))


def abs(x):  # noqa: A001 - the DSL mirrors torch's names
    """Absolute value."""
    return sp.Abs(_expr(x, "abs", "x"))


def sign(x):
    """Sign: -1, 0 or 1, and NaN for NaN (numpy's semantics, on every backend)."""
    return sp.sign(_expr(x, "sign", "x"))


def exp(x):
    """Natural exponential."""
    return sp.exp(_expr(x, "exp", "x"))


def log(x):
    """Natural logarithm."""
    return sp.log(_expr(x, "log", "x"))


def pow(x, y):  # noqa: A001
    """x raised to the power y."""
    return sp.Pow(_expr(x, "pow", "x"), _expr(y, "pow", "y"))


def maximum(a, b):
    """Elementwise maximum."""
    return sp.Max(_expr(a, "maximum", "a"), _expr(b, "maximum", "b"))


def minimum(a, b):
    """Elementwise minimum."""
    return sp.Min(_expr(a, "minimum", "a"), _expr(b, "minimum", "b"))


def clamp(x, min=None, max=None):  # noqa: A002
    """Clamp x to [min, max]; either bound may be omitted (torch.clamp semantics)."""
    if min is None and max is None:
        raise DSLError(f"rule {_current_rule_name()!r}: clamp() needs min, max or both")
    out = _expr(x, "clamp", "x")
    if min is not None:
        out = sp.Max(out, _expr(min, "clamp", "min"))
    if max is not None:
        out = sp.Min(out, _expr(max, "clamp", "max"))
    return out


def lerp(start, end, weight):
    """start + weight * (end - start), as torch.lerp."""
    s, e = _expr(start, "lerp", "start"), _expr(end, "lerp", "end")
    return s + _expr(weight, "lerp", "weight") * (e - s)


def eq(a, b):
    """The condition ``a == b`` for ``where`` (Python's ``==`` on DSL expressions asks
    whether they are the same expression, a constant True/False, not a comparison)."""
    return sp.Eq(_expr(a, "eq", "a"), _expr(b, "eq", "b"), evaluate=False)


def ne(a, b):
    """The condition ``a != b`` for ``where`` (see ``eq``)."""
    return sp.Ne(_expr(a, "ne", "a"), _expr(b, "ne", "b"), evaluate=False)


def where(cond, a, b):
    """a where cond holds, else b. cond is a comparison such as ``g > 0``."""
    if isinstance(cond, bool):
        # `state("d") == d0` compares the expressions' structure: it is a Python bool, and
        # used as a condition it silently compiled to one branch
        raise DSLError(f"rule {_current_rule_name()!r}: where() condition is the Python bool "
                       f"{cond}; '==' and '!=' on DSL expressions compare their structure, "
                       "not their values: write eq(a, b) or ne(a, b) (and pick a branch by a "
                       "Python flag with 'a if flag else b')")
    if not _is_condition(cond):
        raise DSLError(f"rule {_current_rule_name()!r}: where() condition {cond!r} is not a "
                       "comparison (write e.g. where(g > 0, a, b))")
    a, b = _expr(a, "where", "a"), _expr(b, "where", "b")
    result = sp.Piecewise((a, _without_inner_where(cond)), (b, True))
    # SymPy folds a where() inside a comparison into an if-then-else boolean (ITE),
    # which no printer supports: spell it with &, | and ~.
    return result.replace(ITE, lambda c, x, y: Or(And(c, x), And(Not(c), y)))


def _without_inner_where(cond):
    """``cond`` with the where()s inside it spelled with &, | and ~. SymPy would fold
    them into an if-then-else boolean itself, and fails with a KeyError when an inner
    condition has no symbol (``u * g > 0`` with ``u`` from ``where(ndim() > 1, ...)``:
    a cautious mask of Adafactor's update)."""
    if not cond.has(sp.Piecewise):
        return cond
    folded = sp.piecewise_fold(cond)
    if not isinstance(folded, sp.Piecewise):
        return folded
    taken, result = sp.true, sp.false  # taken: no earlier branch's condition held
    for value, branch in folded.args:
        result = Or(result, And(taken, branch, _without_inner_where(value)))
        taken = And(taken, Not(branch))
    return result
