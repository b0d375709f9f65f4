"""Turn small integer powers into products: ``g**2`` -> ``g*g``, ``x**-2`` -> ``1/(x*x)``.

A multiply is exact-rounded and cheap on every backend; a generic ``pow`` is neither
(libdevice pow is unavailable to the Triton interpreter, and numba's pow is slow).
This is the last pass: the results are unevaluated SymPy nodes, so nothing may
simplify them afterwards.
"""
from __future__ import annotations

import sympy as sp

MAX_EXPONENT = 4


def _rewrite(e: sp.Expr) -> sp.Expr:
    if e.is_Atom:
        return e
    if isinstance(e, sp.Piecewise):
        return sp.Piecewise(*[(_rewrite(v), _rewrite(c)) for v, c in e.args], evaluate=False)
    args = [_rewrite(a) for a in e.args]
    if isinstance(e, sp.Pow) and e.exp.is_Integer and 2 <= abs(int(e.exp)) <= MAX_EXPONENT:
        base = args[0]
        product = sp.Mul(*([base] * abs(int(e.exp))), evaluate=False)
        return product if e.exp > 0 else sp.Pow(product, -1, evaluate=False)
    return e.func(*args, evaluate=False)


def pow_to_mul(temps, outputs):
    """Apply the rewrite to every temporary and output."""
    return ([(s, _rewrite(e)) for s, e in temps],
            {k: _rewrite(e) for k, e in outputs.items()})
