"""AdaBelief — Zhuang et al. (2020), "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
Observed Gradients" (NeurIPS); pytorch-optimizer's ``AdaBelief`` semantics.

Adam's second moment tracks g^2; AdaBelief tracks (g - m)^2 + eps, the "belief" in the
current gradient direction: a gradient close to its running mean earns a large step.
Options as the reference: AMSGrad-style ``ams_bound`` on that variance, and ``rectify``
(RAdam's rectifier, Liu et al. 2020) which degenerates to momentum SGD while the
variance is intractable (n_sma < n_sma_threshold).
"""
from ..dsl import Rule, grad, lerp, maximum, param, sqrt, state, step, where
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def adabelief(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True,
              fixed_decay=False, rectify=False, n_sma_threshold=5, ams_bound=False, eps=1e-16,
              maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    s = beta2 * state("exp_avg_var") + (1 - beta2) * (g - m) ** 2 + eps  # eps inside, as the paper
    states = {"exp_avg": m, "exp_avg_var": s}
    if ams_bound:
        s = states["max_exp_avg_var"] = maximum(state("max_exp_avg_var"), s)
    step_size = lr / (1 - beta1**t)
    if not rectify:
        return Rule(p - step_size * m / (sqrt(s) / sqrt(1 - beta2**t) + eps), **states)
    # RAdam's rectifier (per-step scalars, on the host). Both branches are computed every
    # step, so the rectifier must be finite where it is not used: its radicand, negative
    # in the first steps, is clamped at 0, and its denominator, 0 for beta2 = 0.6
    # (n_sma_max = 4), is replaced by 1. Where n_sma >= n_sma_threshold the reference
    # computes the same value (and fails the same way on a zero denominator).
    n_sma_max = 2 / (1 - beta2) - 1
    n_sma = n_sma_max - 2 * t * beta2**t / (1 - beta2**t)
    use = n_sma >= n_sma_threshold
    denom = where(use, (n_sma_max - 4) * (n_sma_max - 2) * n_sma, 1)
    rt = sqrt(maximum((1 - beta2**t) * (n_sma - 4) * (n_sma - 2) * n_sma_max / denom, 0))
    rectified = where(use, 1, 0)
    scale = rectified * rt / (sqrt(s) + eps) + (1 - rectified)  # else momentum SGD
    return Rule(p - step_size * m * scale, **states)


class AdaBelief(CatalogueOptimizer):
    """Adam with the second moment of (g - m): step sizes from the belief in the gradient."""

    rule = adabelief
    source = ("Zhuang et al. (2020), NeurIPS, arXiv:2010.07468; pytorch-optimizer AdaBelief")
