"""ASGD — averaged SGD, Polyak & Juditsky (1992) with the decaying step of Bottou (2012),
"Stochastic Gradient Descent Tricks"; torch.optim.ASGD semantics.

SGD with step eta_t = lr / (1 + lambd lr t)^alpha and a weight-decay-like shrink
(1 - lambd eta_t), keeping ``ax``, the running average of the iterates from step t0 on
(before that ``ax`` is a copy of the parameter). torch keeps eta and mu as per-tensor
0-d states, but both are functions of the step alone (eta_{t-1} and mu_{t-1} are used at
step t), so here they are per-step scalars computed on the host: torch checkpoints load
(their ``eta``/``mu`` entries are ignored; the step gives the same values), but an
optforge checkpoint has no ``eta``/``mu`` for torch.optim.ASGD to read. Under an lr
scheduler torch's eta uses the previous step's lr, this one the current lr.
"""
from ..dsl import Rule, grad, maximum, param, state, step, where
from ._base import CatalogueOptimizer


def asgd(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False):
    p, g, t = param(), grad(), step()
    g = (-g if maximize else g) + weight_decay * p
    eta = lr / (1 + lambd * lr * (t - 1)) ** alpha  # torch's state["eta"] after t - 1 steps
    new_p = p * (1 - lambd * eta) - eta * g
    # torch: ax <- p while mu = 1 / max(1, t - 1 - t0) is 1, else ax + mu (p - ax); the
    # copy is exact (ax + (p - ax) need not round to p), so blend with a 0/1 scalar
    copy = where(t - 1 - t0 <= 1, 1, 0)
    mu = 1 / maximum(1, t - 1 - t0)
    ax = state("ax")
    return Rule(new_p, ax=copy * new_p + (1 - copy) * (ax + mu * (new_p - ax)))


class ASGD(CatalogueOptimizer):
    """Averaged SGD with a decaying step (torch.optim.ASGD)."""

    rule = asgd
    source = ("Polyak & Juditsky (1992), SIAM J. Control Optim. 30(4); Bottou (2012), "
              "'Stochastic Gradient Descent Tricks'; torch.optim.ASGD")
