"""Lion — Chen et al. (2023), "Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675.

c = b1 m + (1 - b1) g;  p <- p - lr (sign(c) + wd p);  m <- b2 m + (1 - b2) g
(CATALOGUE.md, seed 002:32; Algorithm 2 of the paper, decoupled weight decay).
"""
from ..dsl import Rule, grad, param, sign, state
from ._base import CatalogueOptimizer


def lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    beta1, beta2 = betas
    m = state("exp_avg")
    c = beta1 * m + (1 - beta1) * g
    return Rule(p - lr * (sign(c) + weight_decay * p), exp_avg=beta2 * m + (1 - beta2) * g)


class Lion(CatalogueOptimizer):
    """EvoLved Sign Momentum: the sign of an interpolated momentum."""

    rule = lion
    source = "Chen et al. (2023), arXiv:2302.06675, Algorithm 2"
