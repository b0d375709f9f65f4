"""LAMB — You et al. (2020), "Large Batch Optimization for Deep Learning: Training BERT in
76 minutes", arXiv:1904.00962, Algorithm 2 (seed 002:68), with phi(z) = z:

m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  r = m_hat / (sqrt(v_hat) + eps) + wd p
p <- p - lr * (||p|| / ||r||) * r,  norms per tensor; the ratio is 1 where ||p|| or ||r|| is 0
(the official TF code's where()). m_hat, v_hat are bias-corrected as in the paper;
``bias_correction=False`` drops both corrections (NVIDIA apex FusedLAMB's flag). The trust
ratio is not clamped (phi = identity; pytorch-optimizer clamps ||p|| at 10).
"""
from ..dsl import Rule, grad, named, norm, param, sqrt, state, step, where
from ._base import CatalogueOptimizer


def lamb(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=True,
         maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    b1, b2 = betas
    m = b1 * state("exp_avg") + (1 - b1) * g
    v = b2 * state("exp_avg_sq") + (1 - b2) * g * g
    if bias_correction:  # named: optforge latex shows these as rows of their own
        m_hat, v_hat = named(m / (1 - b1**t), "m_hat"), named(v / (1 - b2**t), "v_hat")
        r = named(m_hat / (sqrt(v_hat) + eps) + weight_decay * p, "r")
    else:
        r = named(m / (sqrt(v) + eps) + weight_decay * p, "r")
    w_norm, r_norm = norm(p), norm(r)
    ratio = named(where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, 1), "trust_ratio")
    return Rule(p - lr * ratio * r, exp_avg=m, exp_avg_sq=v)


class LAMB(CatalogueOptimizer):
    """Adam direction plus decay, rescaled per tensor by the trust ratio ||p|| / ||r||."""

    rule = lamb
    source = "You et al. (2020), arXiv:1904.00962, Algorithm 2 (LAMB), phi = identity"
