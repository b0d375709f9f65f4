"""Adam — Kingma & Ba (2015), with AMSGrad (Reddi et al., 2018); torch.optim.Adam semantics.

Weight decay here is L2 (added to the gradient); AdamW decouples it, and so does
``decoupled_weight_decay=True`` (torch's flag: then Adam is AdamW, term for term).
"""
import torch

from ..dsl import Rule, grad, param, step
from ..dsl.transforms import adam_direction
from ._base import CatalogueOptimizer


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False, decoupled_weight_decay=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    if decoupled_weight_decay:  # AdamW's expression, so both give the same bits
        direction, states = adam_direction(g, t, betas, eps, amsgrad)
        return Rule(p * (1 - lr * weight_decay) - lr * direction, **states)
    direction, states = adam_direction(g + weight_decay * p, t, betas, eps, amsgrad)
    return Rule(p - lr * direction, **states)


def check_adam_tensors(name: str, group: dict) -> None:
    """torch.optim.Adam's rules for tensor lr and betas, with its messages."""
    foreach_only = group.get("foreach") and not group.get("capturable")
    if isinstance(group["lr"], torch.Tensor) and foreach_only:
        raise ValueError(f"{name}: lr as a Tensor is not supported for capturable=False "
                         "and foreach=True")
    betas = group["betas"]
    if not (all(isinstance(b, float) for b in betas)
            or all(isinstance(b, torch.Tensor) for b in betas)):
        raise ValueError(f"{name}: betas must be either both floats or both Tensors")
    for i, beta in enumerate(betas):
        if isinstance(beta, torch.Tensor) and foreach_only:
            raise ValueError(f"{name}: betas[{i}] as a Tensor is not supported for "
                             "capturable=False and foreach=True")


class Adam(CatalogueOptimizer):
    """Adam with optional AMSGrad (torch.optim.Adam semantics)."""

    rule = adam
    source = "Kingma & Ba (2015), arXiv:1412.6980; torch.optim.Adam"
    torch_flags = {"foreach": None, "capturable": False, "differentiable": False,
                   "fused": None}

    def check_group(self, group: dict, where: str) -> None:
        super().check_group(group, where)
        check_adam_tensors(type(self).__name__, group)
