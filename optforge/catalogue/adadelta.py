"""Adadelta — Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method"; torch.optim.Adadelta.

The step is the gradient scaled by RMS[delta]_{t-1} / RMS[g]_t, the ratio of running
root-mean-squares of past steps and of gradients, so its units match the parameter's;
torch multiplies it by ``lr`` (1.0 is the paper's method).
"""
from ..dsl import Rule, grad, param, sqrt, state
from ._base import CatalogueOptimizer


def adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = (-g if maximize else g) + weight_decay * p
    square_avg = rho * state("square_avg", nonnegative=True) + (1 - rho) * g * g
    acc_delta = state("acc_delta", nonnegative=True)
    # the step uses the accumulated delta of the previous steps, then joins it
    delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
    return Rule(p - lr * delta, square_avg=square_avg,
                acc_delta=rho * acc_delta + (1 - rho) * delta * delta)


class Adadelta(CatalogueOptimizer):
    """Per-coordinate steps from running RMS of gradients and of steps (torch.optim.Adadelta)."""

    rule = adadelta
    source = "Zeiler (2012), arXiv:1212.5701; torch.optim.Adadelta"
