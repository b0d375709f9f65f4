"""Exponentiated gradient = mirror descent on the simplex with the entropic mirror map
(Kivinen & Warmuth (1997), Inf. Comput. 132(1); Beck & Teboulle (2003), Oper. Res. Lett.
31(3)); the multiplicative-weights / Hedge update of online learning (CATALOGUE.md R,
seeds 004:66, 003).

p <- p exp(-lr g) / sum(p exp(-lr g)), over the tensor (each row with ``per_row``).
Computed as p exp(-lr (g - m)) / sum(...) with m the smallest g on the support {p > 0}:
the shift cancels in the ratio, every factor is <= 1 and the support's minimiser keeps
its weight, so the sum neither overflows nor underflows to 0. Coordinates at 0 stay at 0,
as in the exact update. ``maximize`` ascends (g -> -g).
"""
from ..dsl import Rule, abs, amax, exp, grad, param, where
from ..dsl import sum as total
from ._base import CatalogueOptimizer


def exponentiated_gradient(lr=0.1, maximize=False, per_row=False):
    p, g = param(), grad()
    g, over = -g if maximize else g, "row" if per_row else "tensor"
    neg_min = amax(where(p > 0, -g, -amax(abs(g), over=over)), over=over)  # -min_{p>0} g
    z = where(p > 0, p * exp(-lr * (g + neg_min)), 0)
    return Rule(z / total(z, over=over))


class ExponentiatedGradient(CatalogueOptimizer):
    """Multiplicative weights on the probability simplex (entropic mirror descent)."""
    rule = exponentiated_gradient
    source = "Kivinen & Warmuth (1997); Beck & Teboulle (2003), entropic mirror descent"
