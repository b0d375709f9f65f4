"""Optimistic gradient descent = Euclidean optimistic mirror descent (Rakhlin & Sridharan
(2013), "Optimization, Learning, and Games with Predictable Sequences", arXiv:1311.1869,
with the last gradient as the hint; Daskalakis et al. (2018), "Training GANs with
Optimism", arXiv:1711.00141).

p <- p - lr (2 g_t - g_{t-1}) (CATALOGUE.md, seeds 003, 004:66). The two-sequence OMD
form y <- y - lr g_t, p = y - lr M_{t+1}, M_{t+1} = g_t reduces to this one-sequence form.
First step: the stored gradient starts at zero (the first hint M_1 = 0, so p_1 = y_1),
giving p - 2 lr g_1. ``maximize`` (per group) turns it into optimistic ascent, which with
two groups is optimistic gradient descent-ascent for min-max games.
"""
from ..dsl import Rule, grad, param, state
from ._base import CatalogueOptimizer


def optimistic_gd(lr=1e-2, weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    d = (-g if maximize else g) + weight_decay * p
    return Rule(p - lr * (2 * d - state("prev_grad")), prev_grad=d)


class OptimisticGD(CatalogueOptimizer):
    """Gradient step extrapolated with the previous gradient as a hint of the next one."""

    rule = optimistic_gd
    source = ("Rakhlin & Sridharan (2013), arXiv:1311.1869; "
              "Daskalakis, Ilyas, Syrgkanis & Zeng (2018), arXiv:1711.00141")
