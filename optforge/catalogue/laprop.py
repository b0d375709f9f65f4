"""LaProp — Ziyin, Wang & Ueda (2020), "LaProp: Separating Momentum and Adaptivity in Adam",
arXiv:2002.04839; pytorch-optimizer's ``LaProp`` semantics.

RMSprop-normalise the gradient first, then take momentum of the normalised gradient
(Adam does it the other way round), so beta1 and beta2 act independently and any
beta1 < 1 is stable. The momentum accumulates lr * g / sqrt(v_hat), and the step divides
it by 1 - beta1^t. The reference keeps that correction as an lr-weighted running average
(a per-tensor scalar state); with a constant lr it equals 1 - beta1^t, which is what runs
here (per-tensor states are issue 15's scoped states), so under an lr schedule the two
differ in the first ~1/(1 - beta1) steps after a change. ``centered`` subtracts the squared
mean gradient from v after ``steps_before_using_centered`` steps. Weight decay is
decoupled and applied after the step, as the reference (whose coupled form, added to the
gradient after the step, changes nothing).
"""
from ..dsl import Rule, grad, maximum, param, sqrt, state, step, where
from ._base import CatalogueOptimizer


def laprop(lr=4e-4, betas=(0.9, 0.999), centered=False, steps_before_using_centered=10,
           weight_decay=0.0, fixed_decay=False, ams_bound=False, eps=1e-15, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    beta1, beta2 = betas
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    states = {"exp_avg_sq": v}
    second = v
    if centered:
        mean = states["exp_mean_avg_beta2"] = state("exp_mean_avg_beta2") + (1 - beta2) * (
            g - state("exp_mean_avg_beta2"))
        use = where(t > steps_before_using_centered, 1, 0)  # a per-step 0/1 scalar
        second = v - use * mean * mean
    if ams_bound:
        second = states["max_exp_avg_sq"] = maximum(state("max_exp_avg_sq"), second)
    # the reference's apply_ams_bound adds 1e-15 under the root
    denom = (sqrt(second + 1e-15) + eps) / sqrt(1 - beta2**t)
    m = states["exp_avg"] = beta1 * state("exp_avg") + (1 - beta1) * lr * g / denom
    return Rule((p - m / (1 - beta1**t)) * (1 - weight_decay * (1 if fixed_decay else lr)),
                **states)


class LaProp(CatalogueOptimizer):
    """Momentum of the RMS-normalised gradient: adaptivity and momentum decoupled."""

    rule = laprop
    source = "Ziyin, Wang & Ueda (2020), arXiv:2002.04839; pytorch-optimizer LaProp"
