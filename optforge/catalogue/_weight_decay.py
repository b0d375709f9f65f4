"""The weight-decay convention of pytorch-optimizer's rules (``BaseOptimizer.apply_weight_decay``),
shared by the catalogue entries that follow those references (Yogi, AdaBelief, Tiger, QHAdam,
AdEMAMix), and torch's own for RAdam and NAdam (``decoupled_weight_decay``): ``weight_decouple`` multiplies the parameter by ``1 - weight_decay * lr`` (by
``1 - weight_decay`` with ``fixed_decay``) before the step, as AdamW; otherwise
``weight_decay * p`` joins the gradient (L2)."""


def apply_weight_decay(p, g, lr, weight_decay, weight_decouple: bool, fixed_decay: bool):
    """Returns (the parameter the step starts from, the gradient the moments read)."""
    if weight_decouple:
        return p * (1 - weight_decay * (1 if fixed_decay else lr)), g
    return p, g + weight_decay * p
