"""AdamP — Heo et al. (2021), arXiv:2006.08217, Algorithm 2 and the official code
(github.com/clovaai/AdamP), seed 002:72; SGDP (Algorithm 1) is in sgdp.py.

Projection (official ``_projection``): channel view (a row per output channel), then layer
view; the first whose max over rows of |cos(g, p)| < delta / sqrt(row length) applies
u <- u - p_n <p_n, u> per row, p_n = p / (||p|| + eps), and scales decay by wd_ratio.
cos as torch.cosine_similarity: <x, y> / (max(|x|, eps) max(|y|, eps)). Only tensors with
ndim > 1 are projected, as in the official code.
Adam part as the official code: u = m / (sqrt(v) / sqrt(1 - b2^t) + eps) (nesterov:
b1 m + (1 - b1) g over it);  p <- p (1 - lr wd r) - lr / (1 - b1^t) proj(u).
"""
from ..dsl import (Rule, amax, dot, grad, maximum, ndim, norm, numel, param, sqrt, state, step,
                   where)
from ..dsl import abs as abs_
from ._base import CatalogueOptimizer


def radial_projection(u, p, g, delta, wd_ratio, eps):
    """(projected u, weight-decay multiplier): channel view first, then layer view."""
    def cos(over):
        return abs_(dot(g, p, over=over)) / (maximum(norm(g, over=over), eps)
                                             * maximum(norm(p, over=over), eps))

    def project(over):
        return u - p * dot(p, u, over=over) / (norm(p, over=over) + eps) ** 2
    ok = ndim() > 1
    channel = ok & (amax(cos("row")) < delta / sqrt(numel(over="row")))
    layer = ok & (cos("tensor") < delta / sqrt(numel()))
    u = where(channel, project("row"), where(layer, project("tensor"), u))
    return u, where(channel | layer, wd_ratio, 1)


def adamp(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, delta=0.1, wd_ratio=0.1,
          nesterov=False):
    p, g, t = param(), grad(), step()
    b1, b2 = betas
    m = b1 * state("exp_avg") + (1 - b1) * g
    v = b2 * state("exp_avg_sq") + (1 - b2) * g * g
    denom = sqrt(v) / sqrt(1 - b2**t) + eps
    u = (b1 * m + (1 - b1) * g if nesterov else m) / denom
    u, ratio = radial_projection(u, p, g, delta, wd_ratio, eps)
    return Rule(p * (1 - lr * weight_decay * ratio) - lr / (1 - b1**t) * u,
                exp_avg=m, exp_avg_sq=v)


class AdamP(CatalogueOptimizer):
    """Adam with the radial component removed on scale-invariant weights."""

    rule = adamp
    source = "Heo et al. (2021), arXiv:2006.08217, Algorithm 2; official clovaai/AdamP code"
