"""AdEMAMix — Pagliardini, Ablin & Grangier (2024), "The AdEMAMix Optimizer: Better, Faster,
Older", arXiv:2409.03489, Algorithm 1; pytorch-optimizer's ``AdEMAMix`` semantics.

Adam plus a second, slow momentum (beta3 ~ 0.9999) added with weight alpha to the
bias-corrected fast one: old gradients stay useful for tens of thousands of steps. The
optional warmup schedulers of alpha (linear) and beta3 (linear in the half-life) over
``t_alpha_beta3`` steps are per-step scalars, computed on the host; ``t_alpha_beta3=0``
turns them off (the reference spells that ``None``, which is not a number hyperparameter
here).
"""
from ..dsl import (Rule, exp, grad, lerp, log, minimum, param, specialize_on_zero, sqrt, state,
                   step)
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


@specialize_on_zero("t_alpha_beta3")
def ademamix(lr=1e-3, betas=(0.9, 0.999, 0.9999), weight_decay=0.0, weight_decouple=False,
             fixed_decay=False, alpha=5.0, t_alpha_beta3=0.0, eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    beta1, beta2, beta3 = betas
    if t_alpha_beta3 == 0:
        alpha_t, beta3_t = alpha, beta3
    else:  # the paper's schedulers (its eq. for alpha_t and f(t, beta_start, beta_end))
        frac = t / t_alpha_beta3
        alpha_t = minimum(frac * alpha, alpha)
        beta3_t = minimum(exp(log(beta1) * log(beta3)
                              / ((1 - frac) * log(beta3) + frac * log(beta1))), beta3)
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    slow = lerp(state("exp_avg_slow"), g, 1 - beta3_t)
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    return Rule(p - lr * (m / (1 - beta1**t) + alpha_t * slow) / denom,
                exp_avg=m, exp_avg_sq=v, exp_avg_slow=slow)


class AdEMAMix(CatalogueOptimizer):
    """Adam with a mixture of a fast and a slow gradient EMA."""

    rule = ademamix
    source = "Pagliardini, Ablin & Grangier (2024), arXiv:2409.03489; pytorch-optimizer AdEMAMix"
