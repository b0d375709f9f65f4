"""MARS — Yuan et al. (2024), "MARS: Unleashing the Power of Variance Reduction for Training
Large Models", arXiv:2411.10438 (Algorithm 2, the approximate MARS with g_{t-1} from the
previous batch); pytorch-optimizer's ``MARS`` semantics with ``optimize_1d=True``.

A STORM-like variance-reduced gradient c_t = g_t + gamma beta1 / (1 - beta1) (g_t - g_{t-1}),
clipped to unit norm per tensor (a reduce stage), feeds AdamW (``MARS``, the paper's
MARS-AdamW) or Lion (``MARSLion``). The previous gradient is a state (``last_grad``, zero
before the first step, as the reference). The paper and the reference give 1-D tensors
(biases, norms) plain AdamW; here the rule applies to every tensor it is given, so put
those in a param group with ``"rule": optforge.AdamW``. Weight decay is decoupled (the
reference's coupled form would change only the stored last gradient).
"""
from ..dsl import Rule, grad, lerp, maximum, norm, param, sign, sqrt, state, step
from ._base import CatalogueOptimizer


def _corrected(g, beta1, gamma):
    """The clipped variance-reduced gradient c_t, and the new last_grad."""
    c = g + gamma * beta1 / (1 - beta1) * (g - state("last_grad"))
    return c / maximum(norm(c), 1)  # the reference: c / ||c|| only where ||c|| > 1


def _decayed(p, lr, weight_decay, fixed_decay):
    return p * (1 - weight_decay * (1 if fixed_decay else lr))


def mars(lr=3e-3, betas=(0.95, 0.99), gamma=0.025, weight_decay=0.0, fixed_decay=False,
         ams_bound=False, eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    beta1, beta2 = betas
    c = _corrected(g, beta1, gamma)
    m = lerp(state("exp_avg"), c, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * c * c
    states = {"exp_avg": m, "exp_avg_sq": v, "last_grad": g}
    if ams_bound:
        v = states["max_exp_avg_sq"] = maximum(state("max_exp_avg_sq"), v)
    # the reference's apply_ams_bound adds 1e-15 under the root
    denom = (sqrt(v + 1e-15) + eps) / sqrt(1 - beta2**t) * (1 - beta1**t)
    return Rule(_decayed(p, lr, weight_decay, fixed_decay) - lr * m / denom, **states)


def mars_lion(lr=3e-3, betas=(0.95, 0.99), gamma=0.025, weight_decay=0.0, fixed_decay=False,
              maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    beta1 = betas[0]  # (beta2 is unused, as in the reference's mars_type="lion")
    m = lerp(state("exp_avg"), _corrected(g, beta1, gamma), 1 - beta1)
    return Rule(_decayed(p, lr, weight_decay, fixed_decay) - lr * sign(m), exp_avg=m,
                last_grad=g)


class MARS(CatalogueOptimizer):
    """MARS-AdamW: AdamW on a clipped, variance-reduced gradient."""

    rule = mars
    source = "Yuan et al. (2024), arXiv:2411.10438, Algorithm 2; pytorch-optimizer MARS"


class MARSLion(CatalogueOptimizer):
    """MARS-Lion: the sign of momentum of a clipped, variance-reduced gradient."""

    rule = mars_lion
    source = ("Yuan et al. (2024), arXiv:2411.10438 (MARS-Lion); pytorch-optimizer MARS "
              "with mars_type='lion'")
