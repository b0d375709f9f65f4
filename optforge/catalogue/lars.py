"""LARS — You, Gitman & Ginsburg (2017), "Large Batch Training of Convolutional Networks",
arXiv:1708.03888, Algorithm 1 (LAMB's momentum sibling, seed 002:68):

local_lr = eta ||p|| / (||g|| + wd ||p||)   (norms per tensor; 1 where ||p|| or the
denominator is 0, as pytorch-optimizer; TF's LARSOptimizer tests ||g|| > 0 instead)
v <- momentum v + lr * local_lr * (g + wd p);   p <- p - v
As in the paper, the global lr is inside the momentum buffer (torch's SGD applies it
outside: the two agree for a constant lr). The paper's polynomial lr decay is a schedule.
``adaptive=False`` (a per-group variant) gives plain momentum SGD with no weight decay, the
treatment pytorch-optimizer and common practice give biases and norm scales (1-D tensors):
put those in their own param group with adaptive=False.
"""
from ..dsl import Rule, grad, norm, param, state, where
from ._base import CatalogueOptimizer


def lars(lr=1e-3, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3, adaptive=True,
         maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    if not adaptive:
        v = momentum * state("momentum_buffer") + lr * g
        return Rule(p - v, momentum_buffer=v)
    w_norm, g_norm = norm(p), norm(g)
    denom = g_norm + weight_decay * w_norm
    local_lr = where((w_norm > 0) & (denom > 0), trust_coefficient * w_norm / denom, 1)
    v = momentum * state("momentum_buffer") + lr * local_lr * (g + weight_decay * p)
    return Rule(p - v, momentum_buffer=v)


class LARS(CatalogueOptimizer):
    """Momentum SGD with a per-tensor local learning rate eta ||p|| / (||g|| + wd ||p||)."""

    rule = lars
    source = "You, Gitman & Ginsburg (2017), arXiv:1708.03888, Algorithm 1 (LARS)"
