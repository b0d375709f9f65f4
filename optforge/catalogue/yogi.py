"""Yogi — Zaheer et al. (2018), "Adaptive Methods for Nonconvex Optimization" (NeurIPS);
pytorch-optimizer's ``Yogi`` semantics.

Adam whose second moment moves additively, by (1 - beta2) g^2 towards g^2, instead of
multiplicatively: v <- v - (1 - beta2) sign(v - g^2) g^2, so a burst of large gradients
cannot shrink the effective step as fast as Adam lets it. Both moments start at
``initial_accumulator`` (the paper's 1e-6), eps is 1e-3 (the paper's default).
"""
from ..dsl import Rule, grad, lerp, param, sign, sqrt, state, step
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def yogi(lr=1e-2, betas=(0.9, 0.999), initial_accumulator=1e-6, weight_decay=0.0,
         weight_decouple=True, fixed_decay=False, eps=1e-3, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    beta1, beta2 = betas
    m = lerp(state("exp_avg", init=initial_accumulator), g, 1 - beta1)
    v, g2 = state("exp_avg_sq", init=initial_accumulator), g * g
    v = v - (1 - beta2) * sign(v - g2) * g2
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    return Rule(p - lr / (1 - beta1**t) * m / denom, exp_avg=m, exp_avg_sq=v)


class Yogi(CatalogueOptimizer):
    """Adam with an additive, sign-controlled second-moment update."""

    rule = yogi
    source = ("Zaheer et al. (2018), NeurIPS, 'Adaptive Methods for Nonconvex Optimization'; "
              "pytorch-optimizer Yogi")
