"""Random-scaled SGDM — Zhang & Cutkosky (2024), "Random Scaling and Momentum for
Non-smooth Non-convex Optimization", ICML 2024, arXiv:2405.09742 (seeds 002:224, 004:82).

SGD with (EMA) momentum whose update is multiplied, each step, by an exponentially
distributed random scalar s_t ~ Exp(1):

    m_t = beta m_{t-1} + (1 - beta) g_t;   p_t = p_{t-1} - s_t lr m_t

The draw is one scalar per param group and step, reproducible from the optimizer's
``seed`` (see optforge.dsl.randomness).
"""
from ..dsl import Rule, grad, param, random_scalar, state
from ._base import CatalogueOptimizer


def random_scaled_sgdm(lr=1e-3, beta=0.9):
    p, g = param(), grad()
    m = beta * state("momentum_buffer") + (1 - beta) * g
    s = random_scalar("s", "exponential")
    return Rule(p - s * lr * m, momentum_buffer=m)


class RandomScaledSGDM(CatalogueOptimizer):
    """SGD with momentum, each update scaled by an Exp(1) random scalar."""

    rule = random_scaled_sgdm
    source = "Zhang & Cutkosky (2024), arXiv:2405.09742"
