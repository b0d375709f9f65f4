"""Turn small integer powers into products: ``g**2`` -> ``g*g``, ``x**-2`` -> ``1/(x*x)``.

A multiply is exact-rounded and cheap on every backend; a generic ``pow`` is neither
(libdevice pow is unavailable to the Triton interpreter, and numba's pow is slow).
This is the last pass: the results are unevaluated SymPy nodes, so nothing may
simplify them afterwards.
"""
from __future__ import annotations

import sympy as sp

from ..plan import ElemTemp

MAX_EXPONENT = 4


class _Rewriter:
    """Rewrites powers; a compound base becomes a new temporary so it is computed once."""

    def __init__(self, first_free: int, prefix: str):
        self.next_index, self.prefix = first_free, prefix
        self.new_temps: list[tuple[ElemTemp, sp.Expr]] = []

    def __call__(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom:
            return e
        if isinstance(e, sp.Piecewise):
            return sp.Piecewise(*[(self(v), self(c)) for v, c in e.args], evaluate=False)
        args = [self(a) for a in e.args]
        if isinstance(e, sp.Pow) and e.exp.is_Integer and 2 <= abs(int(e.exp)) <= MAX_EXPONENT:
            base = args[0]
            if not base.is_Atom:
                temp = ElemTemp(f"{self.prefix}{self.next_index}", real=True)
                self.next_index += 1
                self.new_temps.append((temp, base))
                base = temp
            product = sp.Mul(*([base] * abs(int(e.exp))), evaluate=False)
            return product if e.exp > 0 else sp.Pow(product, -1, evaluate=False)
        return e.func(*args, evaluate=False)

    def take(self) -> list[tuple[ElemTemp, sp.Expr]]:
        out, self.new_temps = self.new_temps, []
        return out


def pow_to_mul(temps, outputs, prefix: str = "e"):
    """Apply the rewrite to every temporary and output, keeping evaluation order."""
    rewrite = _Rewriter(first_free=len(temps), prefix=prefix)
    new_temps = []
    for s, e in temps:
        value = rewrite(e)
        new_temps += rewrite.take() + [(s, value)]
    new_outputs = {k: rewrite(e) for k, e in outputs.items()}
    return new_temps + rewrite.take(), new_outputs
