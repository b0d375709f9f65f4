"""Adam — Kingma & Ba (2015), with AMSGrad (Reddi et al., 2018); torch.optim.Adam semantics.

Weight decay here is L2 (added to the gradient); AdamW decouples it.
"""
from ..dsl import Rule, grad, lerp, maximum, param, sqrt, state, step
from ._base import CatalogueOptimizer


def adam_direction(g, t, betas, eps, amsgrad):
    """The bias-corrected Adam direction m_hat / (sqrt(v_hat) + eps) and the new states.

    Written the way torch computes it: ``m.lerp_(g, 1 - beta1)`` and the denominator
    ``sqrt(v) / sqrt(1 - beta2^t) + eps``.
    """
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    states = {"exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        v = maximum(state("max_exp_avg_sq"), v)
        states["max_exp_avg_sq"] = v
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    return m / ((1 - beta1**t) * denom), states


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False):
    p, g, t = param(), grad(), step()
    g = (-g if maximize else g) + weight_decay * p
    direction, states = adam_direction(g, t, betas, eps, amsgrad)
    return Rule(p - lr * direction, **states)


class Adam(CatalogueOptimizer):
    """Adam with optional AMSGrad (torch.optim.Adam semantics)."""

    rule = adam
    source = "Kingma & Ba (2015), arXiv:1412.6980; torch.optim.Adam"
