"""AdamW — Loshchilov & Hutter (2019), decoupled weight decay; torch.optim.AdamW semantics."""
from ..dsl import Rule, grad, param, step
from ..dsl.transforms import adam_direction
from ._base import CatalogueOptimizer


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
          maximize=False):
    p, g, t = param(), grad(), step()
    direction, states = adam_direction(-g if maximize else g, t, betas, eps, amsgrad)
    return Rule(p * (1 - lr * weight_decay) - lr * direction, **states)


class AdamW(CatalogueOptimizer):
    """Adam with decoupled weight decay (torch.optim.AdamW semantics)."""

    rule = adamw
    source = "Loshchilov & Hutter (2019), arXiv:1711.05101; torch.optim.AdamW"
