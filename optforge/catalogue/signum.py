"""Signum — signed momentum, Bernstein et al. (2018), "signSGD", arXiv:1802.04434, Algorithm 3.

m <- beta m + (1 - beta) g;  p <- p - lr sign(m).  Weight decay is added to the
gradient, as in the authors' reference implementation.
"""
from ..dsl import Rule, grad, param, sign, state
from ._base import CatalogueOptimizer


def signum(lr=1e-4, momentum=0.9, weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = (-g if maximize else g) + weight_decay * p
    m = momentum * state("momentum_buffer") + (1 - momentum) * g
    return Rule(p - lr * sign(m), momentum_buffer=m)


class Signum(CatalogueOptimizer):
    """Sign of the momentum (signSGD with momentum)."""

    rule = signum
    source = "Bernstein et al. (2018), arXiv:1802.04434, Algorithm 3"
