"""Cautious optimizers — Liang, Chen, Liu & Liu (2024), arXiv:2411.16085 (seed 002:34).

One line added to a momentum method: zero the update's coordinates whose sign
disagrees with the current gradient, and rescale the rest by ``numel / (kept + 1)``
(the official C-Optim code; pytorch-optimizer's ``apply_cautious``). Weight decay
stays unmasked, as in the paper's C-AdamW and C-Lion. ``optforge.dsl.cautious(rule)``
applies the same mask to any rule's whole step.
"""
from ..dsl import Rule, grad, param, sign, state, step
from ..dsl.transforms import adam_direction, cautious_mask
from ._base import CatalogueOptimizer


def cadamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    p, g, t = param(), grad(), step()
    direction, states = adam_direction(g, t, betas, eps, amsgrad=False)
    return Rule(p * (1 - lr * weight_decay) - lr * direction * cautious_mask(direction, g),
                **states)


def clion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
    p, g = param(), grad()
    beta1, beta2 = betas
    m = state("exp_avg")
    update = sign(beta1 * m + (1 - beta1) * g)
    return Rule(p * (1 - lr * weight_decay) - lr * update * cautious_mask(update, g),
                exp_avg=beta2 * m + (1 - beta2) * g)


class CAdamW(CatalogueOptimizer):
    """AdamW whose step is masked where it disagrees with the gradient's sign."""

    rule = cadamw
    source = "Liang et al. (2024), arXiv:2411.16085, C-AdamW; official C-Optim code"


class CLion(CatalogueOptimizer):
    """Lion whose step is masked where it disagrees with the gradient's sign."""

    rule = clion
    source = "Liang et al. (2024), arXiv:2411.16085, C-Lion; official C-Optim code"
