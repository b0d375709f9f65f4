"""Adan — Xie et al. (2022/2024), "Adan: Adaptive Nesterov Momentum Algorithm for Faster
Optimizing Deep Models", arXiv:2208.06677 (TPAMI); the official sail-sg/Adan and
pytorch-optimizer's ``Adan`` semantics.

Nesterov momentum without the extra gradient: besides Adam's moments of g, Adan keeps an
EMA of the gradient difference g_t - g_{t-1} and takes the second moment of the
Nesterov-corrected gradient g_t + beta2 (g_t - g_{t-1}). betas follow the official code's
convention (weights on the old values, 0.98, 0.92, 0.99; the paper's are one minus those).
The first step's difference is 0, as the reference's. Weight decay is the paper's proximal
form p / (1 + lr wd) after the step, or AdamW's with ``weight_decouple``. ``max_grad_norm``
> 0 clips the gradients by their global norm over the param group (a reduce stage).
"""
from ..dsl import (Rule, grad, lerp, minimum, norm, param, specialize_on_zero, sqrt, state,
                   step, where)
from ._base import CatalogueOptimizer


@specialize_on_zero("max_grad_norm")
def adan(lr=1e-3, betas=(0.98, 0.92, 0.99), weight_decay=0.0, weight_decouple=False,
         max_grad_norm=0.0, eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    if max_grad_norm != 0:  # the reference: min(max_grad_norm / (||g||_global + eps), 1)
        g = g * minimum(max_grad_norm / (norm(g, over="group") + eps), 1)
    beta1, beta2, beta3 = betas
    # the previous (clipped) gradient; on step 1 there is none and the difference is 0
    diff = (g - state("prev_grad")) * where(t > 1, 1, 0)
    m = lerp(state("exp_avg"), g, 1 - beta1)
    d = lerp(state("exp_avg_diff"), diff, 1 - beta2)
    nesterov = g + beta2 * diff
    n = beta3 * state("exp_avg_sq") + (1 - beta3) * nesterov * nesterov
    denom = sqrt(n) / sqrt(1 - beta3**t) + eps
    update = lr / (1 - beta1**t) * m / denom + lr * beta2 / (1 - beta2**t) * d / denom
    if weight_decouple:
        new_p = p * (1 - lr * weight_decay) - update
    else:
        new_p = (p - update) / (1 + lr * weight_decay)
    return Rule(new_p, exp_avg=m, exp_avg_diff=d, exp_avg_sq=n, prev_grad=g)


class Adan(CatalogueOptimizer):
    """Adaptive Nesterov momentum from gradient differences."""

    rule = adan
    source = ("Xie et al. (2022), arXiv:2208.06677; official sail-sg/Adan; "
              "pytorch-optimizer Adan")
