"""CAME — Luo et al. (2023), "CAME: Confidence-guided Adaptive Memory Efficient
Optimization"; the reference implementation (yangluo7/CAME).

Adafactor's factored second moment (row- and column-scoped states, rows + cols values for
a matrix) with a first moment, whose step is scaled by a factored estimate of its
instability ``(update - exp_avg)^2``: confident directions move further. A vector keeps
its second moment per element and steps by its first moment, as the reference does.
Parameters with more than 2 dimensions are refused (see adafactor.py).
"""
from ..dsl import (Rule, grad, mean, minimum, ndim, norm, numel, param, rsqrt, sqrt, state,
                   where)
from ._adafactor_base import FactoredOptimizer
from ._base import CatalogueOptimizer


def _factored(name: str, value, beta):
    """(row, col) EMAs of ``value``'s row and column means (HF's mul_/add_ order)."""
    row = state(f"{name}_row", scope="row") * beta + mean(value, over="row") * (1 - beta)
    col = state(f"{name}_col", scope="col") * beta + mean(value, over="col") * (1 - beta)
    return row, col


def came(lr=2e-4, eps=(1e-30, 1e-16), clip_threshold=1.0, betas=(0.9, 0.999, 0.9999),
         weight_decay=0.0):
    # Arranged so the kernels divide per row or column, not per element (the norm's stage:
    # once; the reference's algebra, float32 results a few ulps apart): rsqrt(row / mean) is
    # sqrt(mean) * rsqrt(row), the mean one value per tensor; clipping multiplies by
    # min(clip * sqrt(n) / norm, 1), one value per tensor, instead of dividing every element
    # by max(norm / sqrt(n) / clip, 1); the instability u - m, m = beta1 * m_old +
    # (1 - beta1) * u, is beta1 * (u - m_old) (u - m expanded to two copies of u's factor).
    # Written as the reference, res_row/res_col's reduce stage divided ~9 times per element
    # and ptxas gave it a stack frame on sm_80 for IEEE division's slow path (AOT sweep).
    p, g = param(), grad()
    beta1, beta2, beta3 = betas
    eps1, eps2 = eps
    sq_row, sq_col = _factored("exp_avg_sq", g * g + eps1, beta2)
    factored, m_old = ndim() > 1, state("exp_avg")  # (declared here: the states' order)
    u = where(factored, sqrt(mean(sq_row)) * rsqrt(sq_col), 1) * rsqrt(sq_row) * g
    u = u * minimum(clip_threshold * sqrt(numel()) / norm(u), 1)
    m = beta1 * m_old + (1 - beta1) * u
    res_row, res_col = _factored("exp_avg_res", (beta1 * (u - m_old)) ** 2 + eps2, beta3)
    step_dir = where(factored, sqrt(mean(res_row)) * rsqrt(res_row) * rsqrt(res_col), 1) * m
    return Rule(p - (weight_decay * lr) * p - lr * step_dir, exp_avg=m, exp_avg_sq_row=sq_row,
                exp_avg_sq_col=sq_col, exp_avg_res_row=res_row, exp_avg_res_col=res_col)


class CAME(FactoredOptimizer, CatalogueOptimizer):
    """Adafactor with momentum scaled by its factored confidence (rows + cols states)."""

    rule = came
    source = "Luo et al. (2023), ACL, arXiv:2307.02047; yangluo7/CAME (the reference)"
