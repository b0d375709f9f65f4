"""Tiger — Su (2023), "Tiger: A Tight-fisted Optimizer" (github.com/bojone/tiger);
pytorch-optimizer's ``Tiger`` semantics.

Lion with one beta: the momentum m <- beta m + (1 - beta) g is both what the step reads
and what is kept, and the step is lr sign(m). One state, like Lion, read and written once.
"""
from ..dsl import Rule, grad, lerp, param, sign, state
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def tiger(lr=1e-3, beta=0.965, weight_decay=0.01, weight_decouple=True, fixed_decay=False,
          maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    m = lerp(state("exp_avg"), g, 1 - beta)
    return Rule(p - lr * sign(m), exp_avg=m)


class Tiger(CatalogueOptimizer):
    """Sign of a single-beta momentum (a tighter Lion)."""

    rule = tiger
    source = ("Su (2023), 'Tiger: A Tight-fisted Optimizer', github.com/bojone/tiger; "
              "pytorch-optimizer Tiger")
