"""RMSprop — Hinton (2012, lecture 6e), centered form of Graves (2013); torch.optim.RMSprop."""
from ..dsl import Rule, grad, lerp, param, specialize_on_zero, sqrt, state
from ._base import CatalogueOptimizer


@specialize_on_zero("momentum")
def rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            maximize=False):
    p, g = param(), grad()
    g = (-g if maximize else g) + weight_decay * p
    square_avg = alpha * state("square_avg", nonnegative=True) + (1 - alpha) * g * g
    states = {"square_avg": square_avg}
    if centered:
        grad_avg = lerp(state("grad_avg"), g, 1 - alpha)
        states["grad_avg"] = grad_avg
        avg = sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = sqrt(square_avg) + eps
    if momentum == 0:
        return Rule(p - lr * g / avg, **states)
    buf = momentum * state("momentum_buffer") + g / avg
    return Rule(p - lr * buf, momentum_buffer=buf, **states)


class RMSprop(CatalogueOptimizer):
    """Divide the gradient by a running RMS of recent gradients (torch.optim.RMSprop)."""

    rule = rmsprop
    source = "Hinton, Coursera lecture 6e (2012); Graves (2013) arXiv:1308.0850; torch.optim.RMSprop"
    torch_flags = {"capturable": False, "foreach": None, "differentiable": False}
