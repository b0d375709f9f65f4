"""Clipped SGD — SGD on gradients clipped to a global norm, the clipping fused into the
step: clip(g, lambda) = min(1, lambda / ||g||) g of Sadiev et al. (2023), arXiv:2302.00999
(seed 002:138; clipped-SGD), also the clipping of seed 002:10 (an adaptive clipping norm
is max_norm changed per step by a scheduler), in the form PyTorch users run:
torch.nn.utils.clip_grad_norm_(params, max_norm) then torch.optim.SGD.

g <- g * min(1, max_norm / (||g|| + 1e-6))   (clip_grad_norm_'s coefficient)
then torch.optim.SGD exactly: weight decay, momentum (buffer = first clipped gradient),
dampening, Nesterov, maximize. The norm spans every parameter of the optimizer, all its
param groups (decay and no-decay groups alike) and, for FSDP2-sharded parameters, every
rank's shard (``over="optimizer"``), as clip_grad_norm_ over the model's parameters does.
"""
from ..dsl import Rule, grad, minimum, norm, param, specialize_on_zero, state, step, where
from ._base import CatalogueOptimizer


@specialize_on_zero("momentum")
def clipped_sgd(lr=1e-3, max_norm=1.0, momentum=0.0, dampening=0.0, weight_decay=0.0,
                nesterov=False, maximize=False):
    p, g, t = param(), grad(), step()
    g = g * minimum(1, max_norm / (norm(g, over="optimizer") + 1e-6))
    d = (-g if maximize else g) + weight_decay * p
    if momentum == 0:
        return Rule(p - lr * d)
    buf = momentum * state("momentum_buffer") + (1 - where(t > 1, dampening, 0)) * d
    return Rule(p - lr * (d + momentum * buf if nesterov else buf), momentum_buffer=buf)


class ClippedSGD(CatalogueOptimizer):
    """torch.optim.SGD on gradients clipped to a global norm of at most max_norm."""

    rule = clipped_sgd
    source = "Sadiev et al. (2023), arXiv:2302.00999 (clipped SGD); clip_grad_norm_ + torch.optim.SGD"
