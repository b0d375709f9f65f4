"""RAdam — Liu et al. (2020), "On the Variance of the Adaptive Learning Rate and Beyond";
torch.optim.RAdam semantics (with ``decoupled_weight_decay``, Loshchilov & Hutter 2019).

Adam whose adaptive step is switched on only once the variance of the adaptive learning
rate is tractable (rho_t > 5), and then rectified by r_t; before that the step is plain
bias-corrected momentum SGD.
"""
from ..dsl import Rule, grad, lerp, maximum, param, sqrt, state, step, where
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def radam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
          decoupled_weight_decay=False, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p_decayed, g = apply_weight_decay(p, g, lr, weight_decay, decoupled_weight_decay, False)
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    bias_correction2 = 1 - beta2**t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / bias_correction2
    # Everything below but v is a per-step scalar, computed once on the host in float64.
    # Both branches are computed there every step (not only the taken one, as torch), so
    # the rectifier must be finite where it is not used: its radicand, negative while
    # rho_t < 4, is clamped at 0, and its denominator, 0 for beta2 = 0.6 (rho_inf = 4),
    # is replaced by 1. Where rho_t > 5 (so rho_inf > 5) neither guard changes a value.
    rectified = rho_t > 5
    denom = where(rectified, (rho_inf - 4) * (rho_inf - 2) * rho_t, 1)
    rect = sqrt(maximum((rho_t - 4) * (rho_t - 2) * rho_inf / denom, 0))
    adaptive = where(rectified, 1, 0)  # 0/1 blend of the two branches (a scalar)
    m_hat = m / (1 - beta1**t)
    # torch: rect * sqrt(bc2) / (sqrt(v) + eps) when rectified, else 1
    scale = adaptive * rect * sqrt(bias_correction2) / (sqrt(v) + eps) + (1 - adaptive)
    return Rule(p_decayed - lr * m_hat * scale, exp_avg=m, exp_avg_sq=v)


class RAdam(CatalogueOptimizer):
    """Rectified Adam (torch.optim.RAdam semantics, decoupled weight decay optional)."""

    rule = radam
    source = ("Liu et al. (2020), arXiv:1908.03265; decoupled decay: Loshchilov & Hutter "
              "(2019); torch.optim.RAdam")
