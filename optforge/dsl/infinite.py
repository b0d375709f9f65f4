"""Infinite hyperparameter values, decided while a rule is built.

A hyperparameter whose default is an infinity (a clipping threshold that is off) is
structural: for an infinite value the rule function sees SymPy's ``oo`` (RuleSpec), so
the kernels never receive an infinity. SymPy simplifies ``minimum(x, oo)`` and
``clamp(x, -oo, oo)`` to ``x`` by itself, but it leaves ``norm(g) > oo`` undecided,
although every DSL value is finite: comparisons with an infinity are decided here, so a
``where`` on them keeps only its taken branch (and the infinity in the other is gone).
An infinity that survives (``g * oo``) is refused by validation, naming the expression.
"""
from __future__ import annotations

import sympy as sp
from sympy.core.relational import Relational

_INFINITIES = (sp.oo, -sp.oo)


def _decided(rel: Relational):
    """The truth of ``x op oo`` (or ``oo op x``, or with -oo) for a finite ``x``."""
    lhs, rhs = rel.lhs, rel.rhs
    if isinstance(rel, sp.Eq):
        return sp.false
    if isinstance(rel, sp.Ne):
        return sp.true
    # normalise to "x op infinity": x < oo, x <= oo are true; x > oo, x >= oo false
    infinity, flipped = (rhs, False) if rhs in _INFINITIES else (lhs, True)
    below = isinstance(rel, (sp.StrictLessThan, sp.LessThan))  # x < inf
    if flipped:
        below = not below
    return sp.true if below == (infinity == sp.oo) else sp.false


def _compares_with_infinity(e) -> bool:
    if not isinstance(e, Relational):
        return False
    sides = [e.lhs in _INFINITIES, e.rhs in _INFINITIES]
    other = e.rhs if sides[0] else e.lhs
    return sides.count(True) == 1 and not other.has(sp.oo, -sp.oo, sp.zoo)


def decide_infinite_comparisons(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every comparison between a finite value and an infinity decided."""
    if not expr.has(sp.oo, -sp.oo):
        return expr
    return expr.replace(_compares_with_infinity, _decided)
