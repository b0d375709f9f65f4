"""COCOB-Backprop — Orabona & Tommasi (2017), "Training Deep Networks without Learning
Rates Through Coin Betting", NeurIPS, arXiv:1705.07795, Algorithm 2.

Per coordinate, with the negative gradient -g as the coin outcome:
L <- max(L, |g|);  G <- G + |g|;  reward <- max(reward - (p - p_1) g, 0);  theta <- theta - g;
p <- p_1 + theta (L + reward) / (L max(G + L, alpha L)).
No learning rate: alpha (default 100) caps the first bets, like a warm-up. As in the
authors' code (github.com/bremen79/parameterfree), L starts at eps = 1e-8, not 0, so
the first step of a coordinate with zero gradient is 0, not 0/0; weight decay (L2) is
added to the gradient. p_1, the initial parameter, is kept as state ``x0``.
"""
from ..dsl import Rule, abs, grad, maximum, param, state
from ._base import CatalogueOptimizer


def cocob(alpha=100.0, eps=1e-8, weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = (-g if maximize else g) + weight_decay * p
    x0 = state("x0", init=param())
    L = maximum(state("L", init=eps), abs(g))
    G = state("grad_norm_sum") + abs(g)
    reward = maximum(state("reward") - (p - x0) * g, 0)
    theta = state("sum_negative_gradients") - g
    new_p = x0 + theta * (L + reward) / (L * maximum(G + L, alpha * L))
    return Rule(new_p, x0=x0, L=L, grad_norm_sum=G, reward=reward, sum_negative_gradients=theta)


class COCOB(CatalogueOptimizer):
    """Coin betting per coordinate: parameter-free, no learning rate."""

    rule = cocob
    source = "Orabona & Tommasi (2017), arXiv:1705.07795, Algorithm 2 (COCOB-Backprop)"
