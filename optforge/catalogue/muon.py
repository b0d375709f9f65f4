"""Muon — Jordan et al. (2024), "Muon: an optimizer for hidden layers" (seed 002:60);
torch.optim.Muon semantics.

Momentum (Nesterov by default), then the Newton-Schulz quintic iteration (coefficients
3.4445, -4.7750, 2.0315; 5 steps, in bfloat16) orthogonalizes the update of each 2-D
weight; decoupled weight decay; the lr is scaled by sqrt(max(1, A/B)) for an A x B
weight (torch's "original"), or by 0.2 sqrt(max(A, B)) with ``match_rms_adamw=True``
(Liu et al. 2025, so AdamW's lr and weight decay carry over). torch's
``adjust_lr_fn`` ("original", "match_rms_adamw" or None) is accepted and kept in
param_groups as torch keeps it; it sets ``match_rms_adamw``.

Unlike torch.optim.Muon, which refuses parameters that are not 2-D, weights with more
than two dimensions are viewed as (shape[0], -1) (a conv kernel (out, in, kh, kw) as
(out, in*kh*kw), as Keller Jordan's reference code does for conv filters), so one
optimizer covers a CNN's hidden weights; 0-D and 1-D parameters are refused, as in torch:
give them an elementwise rule such as AdamW.
"""
from ..dsl import Rule, grad, lerp, maximum, numel, orthogonalize, param, sqrt, state
from ._base import CatalogueOptimizer


def muon(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
         ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5,
         match_rms_adamw=False):
    p, g = param(), grad()
    buf = lerp(state("momentum_buffer"), g, 1 - momentum)
    update = lerp(g, buf, momentum) if nesterov else buf
    ortho = orthogonalize(update, steps=ns_steps, coeffs=ns_coefficients, eps=eps)
    rows, cols = numel(over="col"), numel(over="row")  # A, B of the (A, B) weight
    scale = 0.2 * sqrt(maximum(rows, cols)) if match_rms_adamw else sqrt(maximum(1, rows / cols))
    return Rule(p * (1 - lr * weight_decay) - lr * scale * ortho, momentum_buffer=buf)


class Muon(CatalogueOptimizer):
    """MomentUm Orthogonalized by Newton-Schulz, for 2-D hidden weights."""

    rule = muon
    source = "Jordan et al. (2024), kellerjordan.github.io/posts/muon; torch.optim.Muon"
    torch_flags = {"adjust_lr_fn": None}
    ADJUST_LR_FNS = (None, "original", "match_rms_adamw")

    def __init__(self, params, *args, **kwargs):
        adjust = kwargs.get("adjust_lr_fn")
        if adjust in self.ADJUST_LR_FNS and "match_rms_adamw" not in kwargs:
            kwargs["match_rms_adamw"] = adjust == "match_rms_adamw"
        super().__init__(params, *args, **kwargs)

    def add_param_group(self, param_group: dict) -> None:
        adjust = param_group.get("adjust_lr_fn")
        if adjust in self.ADJUST_LR_FNS and "adjust_lr_fn" in param_group:
            param_group.setdefault("match_rms_adamw", adjust == "match_rms_adamw")
        super().add_param_group(param_group)

    def check_group(self, group: dict, where: str) -> None:
        super().check_group(group, where)
        adjust = group.get("adjust_lr_fn")
        if adjust not in self.ADJUST_LR_FNS:  # torch's message
            raise ValueError(f"Muon: Adjust learning rate function {adjust} is not supported")
        if adjust is not None and (adjust == "match_rms_adamw") != group["match_rms_adamw"]:
            raise ValueError(f"Muon: adjust_lr_fn={adjust!r} and match_rms_adamw="
                             f"{group['match_rms_adamw']} in {where} disagree")
