"""Adam — Kingma & Ba (2015), with AMSGrad (Reddi et al., 2018); torch.optim.Adam semantics.

Weight decay here is L2 (added to the gradient); AdamW decouples it.
"""
from ..dsl import Rule, grad, param, step
from ..dsl.transforms import adam_direction
from ._base import CatalogueOptimizer


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False):
    p, g, t = param(), grad(), step()
    g = (-g if maximize else g) + weight_decay * p
    direction, states = adam_direction(g, t, betas, eps, amsgrad)
    return Rule(p - lr * direction, **states)


class Adam(CatalogueOptimizer):
    """Adam with optional AMSGrad (torch.optim.Adam semantics)."""

    rule = adam
    source = "Kingma & Ba (2015), arXiv:1412.6980; torch.optim.Adam"
