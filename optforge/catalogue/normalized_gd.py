"""beta-normalized gradient descent — Chen, Zhou, Liang & Lu (2023), "Generalized-Smooth
Nonconvex Optimization is As Efficient As Smooth Nonconvex Optimization", arXiv:2303.02854
(seed 004:152), the deterministic algorithm for alpha-symmetric generalized-smooth f:

p <- p - lr g / ||g||^beta,  beta in [alpha, 1]   (beta = 0: GD; beta = 1: normalized GD)
The norm is over the whole parameter vector (the param group); ``per_tensor=True``
normalises each tensor by its own norm instead. Zero gradient: the step is 0 (the limit
for beta < 1; for beta = 1, the minimum-norm choice at a stationary point).
"""
from ..dsl import Rule, grad, norm, param, where
from ._base import CatalogueOptimizer


def beta_normalized_gd(lr=1e-2, beta=1.0, per_tensor=False):
    p, g = param(), grad()
    g_norm = norm(g, over="tensor" if per_tensor else "group")
    return Rule(p - lr * where(g_norm > 0, g / g_norm**beta, 0))


class BetaNormalizedGD(CatalogueOptimizer):
    """Gradient descent with the gradient divided by its norm to the power beta."""

    rule = beta_normalized_gd
    source = "Chen, Zhou, Liang & Lu (2023), arXiv:2303.02854, beta-normalized GD"
