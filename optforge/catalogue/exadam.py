"""EXAdam — Adly (2024), "EXAdam: The Power of Adaptive Cross-Moments", arXiv:2412.20302v1.

m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  d1 = 1 + b2^t v/(v+eps);  d2 = 1 + b1^t m^2/(m^2+eps);
m~ = d1 m/(1-b1^t);  v~ = d2 v/(1-b2^t);  g~ = d1 g/(1-b1^t) (gradient acceleration);
p <- p (1 - lr wd) - lr_t (m~ + g~)/(sqrt(v~) + eps),  lr_t = lr ln(sqrt(2 (t+1))).

The growing step lr_t is the third enhancement of v1 (seed 002:46) and of the author's
reference code (github.com/AhmedMostafa16/EXAdam), which also applies the decoupled
weight decay with the base lr; v2 of the paper drops the growth: ``lr_growth=False``.
"""
from ..dsl import Rule, grad, log, param, sqrt, state, step
from ._base import CatalogueOptimizer


def exadam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lr_growth=True,
           maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    beta1, beta2 = betas
    m = beta1 * state("m") + (1 - beta1) * g
    v = beta2 * state("v") + (1 - beta2) * g * g
    d1 = 1 + v / (v + eps) * beta2**t
    d2 = 1 + m * m / (m * m + eps) * beta1**t
    m_tilde, g_tilde = m / (1 - beta1**t) * d1, g / (1 - beta1**t) * d1
    v_tilde = v / (1 - beta2**t) * d2
    step_size = lr * log(sqrt(2 * (t + 1))) if lr_growth else lr
    update = step_size * (m_tilde + g_tilde) / (sqrt(v_tilde) + eps)
    return Rule(p * (1 - lr * weight_decay) - update, m=m, v=v)


class EXAdam(CatalogueOptimizer):
    """Adam with cross-moment debiasing, gradient acceleration and a growing step."""

    rule = exadam
    source = "Adly (2024), arXiv:2412.20302v1, Algorithm 1; official code AhmedMostafa16/EXAdam"
