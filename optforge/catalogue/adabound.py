"""AdaBound — Luo, Xiong, Liu & Sun (2019), "Adaptive Gradient Methods with Dynamic Bound of
Learning Rate" (ICLR); the official Luolc/AdaBound and pytorch-optimizer's ``AdaBound``
semantics.

Adam whose per-coordinate step size lr sqrt(1 - beta2^t) / (1 - beta1^t) / (sqrt(v) + eps)
is clipped into [final_lr (1 - 1/(gamma t + 1)), final_lr (1 + 1/(gamma t))]: the bounds
close in on final_lr, so the method moves from Adam towards SGD with lr final_lr.
``ams_bound`` is AMSBound (the running max of v). As in the references, final_lr is
scaled by lr / initial lr, so an lr scheduler moves the bounds too: the references divide
by the lr the group had when the optimizer was built, here by ``initial_lr()`` (torch's
schedulers' ``group["initial_lr"]``, else the current lr): the same under a scheduler
built after the optimizer, and at a constant lr.
"""
from ..dsl import Rule, clamp, grad, initial_lr, lerp, maximum, param, sqrt, state, step
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
    final_lr = final_lr * lr / initial_lr()
    lower, upper = final_lr * (1 - 1 / (gamma * t + 1)), final_lr * (1 + 1 / (gamma * t))
    return Rule(p - clamp(step_size / (sqrt(v) + eps), lower, upper) * m, **states)


class AdaBound(CatalogueOptimizer):
    """Adam with per-coordinate step sizes clipped to bounds that converge to final_lr."""

    rule = adabound
    source = ("Luo et al. (2019), ICLR, arXiv:1902.09843; official Luolc/AdaBound; "
              "pytorch-optimizer AdaBound")
