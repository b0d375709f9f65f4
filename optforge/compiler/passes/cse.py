"""Common-subexpression elimination over all values a step writes.

AdamW's new ``exp_avg`` is also the numerator of the parameter update: CSE makes it
one temporary, computed once per element.
"""
from __future__ import annotations

import sympy as sp

from ..plan import ElemTemp


def _names(prefix: str):
    i = 0
    while True:
        yield ElemTemp(f"{prefix}{i}", real=True)
        i += 1


def cse(outputs: dict[str, sp.Expr], prefix: str = "e") -> tuple[list[tuple[sp.Symbol, sp.Expr]],
                                                                dict[str, sp.Expr]]:
    """Return (temporaries in evaluation order, outputs rewritten over them)."""
    names = list(outputs)
    temps, reduced = sp.cse([outputs[n] for n in names], symbols=_names(prefix),
                            optimizations=None, order="none")
    return list(temps), dict(zip(names, reduced))
