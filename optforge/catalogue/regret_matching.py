"""Regret matching+ and its predictive, scale-invariant variants (CATALOGUE.md R, seed 003).

The parameter x is a mixed strategy (a point of the simplex; each row of the (shape[0], -1)
view with ``per_row``), its gradient the loss vector g (A y for the row player of
min_x max_y x^T A y; ``maximize`` negates it). r = <g, x> - g is the instantaneous regret.
RM+, Tammelin (2014), arXiv:1407.5042:  Q <- [Q + r]^+;  x <- Q / sum(Q).
PRM+, Farina, Kroer & Sandholm (2021), AAAI, arXiv:2007.14358, with the prediction
m^{t+1} = l^t, whose predicted regret <m, x^t> - m is r itself:  Q <- [Q + r]^+;
x <- [Q + r]^+ / sum([Q + r]^+).
IREG-PRM+, Zhang, Anagnostides & Sandholm (2025), arXiv:2510.04407: PRM+ whose regret
vector keeps a nondecreasing l2 norm: Q <- [Q + r]^+ * max(1, ||Q_old|| / ||[Q + r]^+||),
a radial rescaling, so the rule stays scale-invariant and parameter-free. (Written from the
paper's abstract; its pseudocode could not be consulted here.)
x is uniform where the sum is 0. State ``avg_strategy`` is the average of the strategies
played, weights t (``linear_averaging``, CFR+ practice) or 1: it is what converges to an
equilibrium in self-play.
"""
from ..dsl import Rule, dot, grad, maximum, norm, numel, param, state, step, where
from ..dsl import sum as total
from ._base import CatalogueOptimizer


def _regret_matching(theta_of, maximize, per_row, linear_averaging):
    x, g, t = param(), grad(), step()
    g, over = -g if maximize else g, "row" if per_row else "tensor"
    r = dot(g, x, over=over) - g
    q, theta = theta_of(state("regret"), r, over)
    s = total(theta, over=over)
    avg = state("avg_strategy")
    avg = avg + (2 / (t + 1) if linear_averaging else 1 / t) * (x - avg)
    return Rule(where(s > 0, theta / s, 1 / numel(over)), regret=q, avg_strategy=avg)


def _rm(q, r, over):
    q = maximum(q + r, 0)
    return q, q


def _prm(q, r, over):
    q = maximum(q + r, 0)
    return q, maximum(q + r, 0)


def _ireg_prm(q_old, r, over):
    q = maximum(q_old + r, 0)
    qn = norm(q, over=over)
    q = q * where(qn > 0, maximum(1, norm(q_old, over=over) / qn), 1)
    return q, maximum(q + r, 0)


def rm_plus(maximize=False, per_row=False, linear_averaging=True):
    return _regret_matching(_rm, maximize, per_row, linear_averaging)


def prm_plus(maximize=False, per_row=False, linear_averaging=True):
    return _regret_matching(_prm, maximize, per_row, linear_averaging)


def ireg_prm_plus(maximize=False, per_row=False, linear_averaging=True):
    return _regret_matching(_ireg_prm, maximize, per_row, linear_averaging)


class RMPlus(CatalogueOptimizer):
    """Regret matching+: strategies proportional to the clipped cumulative regrets."""
    rule, source = rm_plus, "Tammelin (2014), arXiv:1407.5042 (regret matching+)"


class PRMPlus(CatalogueOptimizer):
    """Predictive RM+: the last regret vector counted once more as a prediction."""
    rule, source = prm_plus, "Farina, Kroer & Sandholm (2021), AAAI, arXiv:2007.14358 (PRM+)"


class IREGPRMPlus(CatalogueOptimizer):
    """PRM+ with a regret vector whose norm never decreases (scale-invariant)."""
    rule, source = ireg_prm_plus, ("Zhang, Anagnostides & Sandholm (2025), arXiv:2510.04407 "
                                   "(IREG-PRM+)")
