"""AdaBound — Luo, Xiong, Liu & Sun (2019), "Adaptive Gradient Methods with Dynamic Bound of
Learning Rate" (ICLR); the official Luolc/AdaBound and pytorch-optimizer's ``AdaBound``
semantics.

Adam whose per-coordinate step size lr sqrt(1 - beta2^t) / (1 - beta1^t) / (sqrt(v) + eps)
is clipped into [final_lr (1 - 1/(gamma t + 1)), final_lr (1 + 1/(gamma t))]: the bounds
close in on final_lr, so the method moves from Adam towards SGD with lr final_lr.
``ams_bound`` is AMSBound (the running max of v). The references scale final_lr by
lr / initial lr so that an lr scheduler moves the bounds too; the group's initial lr is
not a rule symbol yet (issue 15), so here ``final_lr`` is absolute: the same as the
references at a constant lr, and under a scheduler set ``final_lr`` with it.
"""
from ..dsl import Rule, clamp, grad, lerp, maximum, param, sqrt, state, step
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def adabound(lr=1e-3, final_lr=1e-1, betas=(0.9, 0.999), gamma=1e-3, weight_decay=0.0,
             weight_decouple=True, fixed_decay=False, ams_bound=False, eps=1e-8,
             maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    states = {"exp_avg": m, "exp_avg_sq": v}
    if ams_bound:
        v = states["max_exp_avg_sq"] = maximum(state("max_exp_avg_sq"), v)
    step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    lower, upper = final_lr * (1 - 1 / (gamma * t + 1)), final_lr * (1 + 1 / (gamma * t))
    return Rule(p - clamp(step_size / (sqrt(v) + eps), lower, upper) * m, **states)


class AdaBound(CatalogueOptimizer):
    """Adam with per-coordinate step sizes clipped to bounds that converge to final_lr."""

    rule = adabound
    source = ("Luo et al. (2019), ICLR, arXiv:1902.09843; official Luolc/AdaBound; "
              "pytorch-optimizer AdaBound")
