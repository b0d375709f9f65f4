"""QHAdam — Ma & Yarats (2019), "Quasi-hyperbolic momentum and Adam for deep learning" (ICLR);
the authors' qhoptim and pytorch-optimizer's ``QHAdam`` semantics.

The step divides a nu1-weighted average of the bias-corrected momentum and the current
gradient by the root of a nu2-weighted average of the bias-corrected second moment and
g^2; nus=(1, 1) is Adam (with eps outside the root's bias correction). The moments are
kept bias-corrected, as qhoptim does: m <- lerp(m, g, 1 / w_t) with w_t = 1 + beta w_{t-1}
= (1 - beta^t) / (1 - beta), a per-step scalar here (the reference keeps w_t as a
one-element tensor per parameter; with constant betas the two are the same number).
"""
from ..dsl import Rule, grad, lerp, param, sqrt, state, step
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def qhadam(lr=1e-3, betas=(0.9, 0.999), nus=(1.0, 1.0), weight_decay=0.0,
           weight_decouple=False, fixed_decay=False, eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p, g = apply_weight_decay(p, g, lr, weight_decay, weight_decouple, fixed_decay)
    (beta1, beta2), (nu1, nu2) = betas, nus
    g2 = g * g
    m = lerp(state("exp_avg"), g, (1 - beta1) / (1 - beta1**t))
    v = lerp(state("exp_avg_sq"), g2, (1 - beta2) / (1 - beta2**t))
    direction = (nu1 * m + (1 - nu1) * g) / (sqrt(nu2 * v + (1 - nu2) * g2) + eps)
    return Rule(p - lr * direction, exp_avg=m, exp_avg_sq=v)


class QHAdam(CatalogueOptimizer):
    """Quasi-hyperbolic Adam: nu-weighted averages of moments and the current gradient."""

    rule = qhadam
    source = ("Ma & Yarats (2019), ICLR, arXiv:1810.06801; facebookresearch/qhoptim; "
              "pytorch-optimizer QHAdam")
