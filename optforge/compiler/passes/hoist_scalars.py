"""Move scalar-only subexpressions out of the elementwise stage into the host prologue.

``(1 - beta1) * g`` becomes ``s0 * g`` with ``s0 = 1 - beta1`` computed once per group
in float64. Inside a sum or product, all scalar operands are grouped into one
temporary (``-lr * wd * p`` -> ``s1 * p``), so the kernel does one multiply, not three.
A scalar condition with per-element branches (``where(t > 1, a, b)``) becomes a 0/1
scalar ``s`` tested as ``s != 0``.
"""
from __future__ import annotations

import sympy as sp
from sympy.core.relational import Relational
from sympy.logic.boolalg import Boolean

from ...dsl.symbols import is_tensor_expr
from ..plan import ScalarTemp


class _Hoister:
    def __init__(self):
        self.temps: dict[sp.Expr, ScalarTemp] = {}

    def temp(self, e: sp.Expr) -> sp.Expr:
        if e.is_Number:
            return e
        if e not in self.temps:
            self.temps[e] = ScalarTemp(f"s{len(self.temps)}", real=True)
        return self.temps[e]

    def cond(self, c):
        if isinstance(c, (sp.logic.boolalg.BooleanTrue, sp.logic.boolalg.BooleanFalse)):
            return c
        if not is_tensor_expr(c):
            flag = self.temp(sp.Piecewise((sp.Integer(1), c), (sp.Integer(0), True)))
            return sp.Ne(flag, 0)
        if isinstance(c, Relational):
            return c.func(self.expr(c.lhs), self.expr(c.rhs))
        return c.func(*[self.cond(a) for a in c.args])

    def expr(self, e: sp.Expr) -> sp.Expr:
        if not is_tensor_expr(e):
            return self.temp(e)
        if e.is_Symbol:
            return e
        if isinstance(e, (sp.Add, sp.Mul)):
            scalar = [a for a in e.args if not is_tensor_expr(a)]
            tensor = [self.expr(a) for a in e.args if is_tensor_expr(a)]
            if scalar:
                tensor.insert(0, self.temp(e.func(*scalar)))
            return e.func(*tensor)
        if isinstance(e, sp.Piecewise):
            return sp.Piecewise(*[(self.expr(v), self.cond(c)) for v, c in e.args])
        if isinstance(e, (Relational, Boolean)):
            return self.cond(e)
        return e.func(*[self.expr(a) for a in e.args])


def hoist_scalars(outputs: dict[str, sp.Expr]) -> tuple[list[tuple[ScalarTemp, sp.Expr]],
                                                        dict[str, sp.Expr]]:
    """Return (prologue assignments, outputs rewritten over the scalar temporaries)."""
    h = _Hoister()
    rewritten = {name: h.expr(e) for name, e in outputs.items()}
    prologue = [(sym, e) for e, sym in h.temps.items()]
    return prologue, rewritten
