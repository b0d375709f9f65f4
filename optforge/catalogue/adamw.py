"""AdamW — Loshchilov & Hutter (2019), decoupled weight decay; torch.optim.AdamW semantics."""
from ..dsl import Rule, grad, param, step
from ..dsl.transforms import adam_direction
from ._base import CatalogueOptimizer
from .adam import check_adam_tensors


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
          maximize=False):
    p, g, t = param(), grad(), step()
    direction, states = adam_direction(-g if maximize else g, t, betas, eps, amsgrad)
    return Rule(p * (1 - lr * weight_decay) - lr * direction, **states)


class AdamW(CatalogueOptimizer):
    """Adam with decoupled weight decay (torch.optim.AdamW semantics)."""

    rule = adamw
    source = "Loshchilov & Hutter (2019), arXiv:1711.05101; torch.optim.AdamW"
    # torch's AdamW is its Adam with decoupled_weight_decay=True, kept in param_groups
    torch_flags = {"foreach": None, "capturable": False, "differentiable": False,
                   "fused": None, "decoupled_weight_decay": True}

    def __init__(self, params, *args, **kwargs):
        if "decoupled_weight_decay" in kwargs:  # as torch.optim.AdamW: not an argument
            raise TypeError("AdamW.__init__() got an unexpected keyword argument "
                            "'decoupled_weight_decay' (AdamW always decouples weight decay)")
        super().__init__(params, *args, **kwargs)

    def check_group(self, group: dict, where: str) -> None:
        super().check_group(group, where)
        check_adam_tensors(type(self).__name__, group)
        if group.get("decoupled_weight_decay", True) is not True:  # (older checkpoints lack it)
            raise ValueError(f"AdamW: decoupled_weight_decay={group['decoupled_weight_decay']!r}"
                             f" in {where}: AdamW always decouples weight decay (use Adam)")
