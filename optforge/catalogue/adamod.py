"""AdaMod — Ding, Ren, Luo & Sun (2019), "An Adaptive and Momental Bound Method for Stochastic
Learning", arXiv:1910.12249; the official lancopku/AdaMod and pytorch-optimizer's ``AdaMod``
semantics.

Adam whose per-coordinate step size eta = lr sqrt(1 - beta2^t) / (1 - beta1^t) / (sqrt(v) +
eps) is capped by its own exponential average (beta3, memory ~1/(1 - beta3) steps), which
damps the very large steps Adam takes early in training.
"""
from ..dsl import Rule, grad, lerp, minimum, param, sqrt, state, step
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def adamod(lr=1e-3, betas=(0.9, 0.99, 0.9999), weight_decay=0.0, weight_decouple=True,
           fixed_decay=False, eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    beta1, beta2, beta3 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    eta = lr * sqrt(1 - beta2**t) / (1 - beta1**t) / (sqrt(v) + eps)
    eta_avg = lerp(state("exp_avg_lr"), eta, 1 - beta3)
    return Rule(p - minimum(eta, eta_avg) * m, exp_avg=m, exp_avg_sq=v, exp_avg_lr=eta_avg)


class AdaMod(CatalogueOptimizer):
    """Adam with step sizes capped by their exponential moving average."""

    rule = adamod
    source = ("Ding et al. (2019), arXiv:1910.12249; official lancopku/AdaMod; "
              "pytorch-optimizer AdaMod")
