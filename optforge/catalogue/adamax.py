"""Adamax — the infinity-norm variant of Adam, Kingma & Ba (2015) section 7.1; torch.optim.Adamax."""
from ..dsl import Rule, abs, grad, lerp, maximum, param, state, step
from ._base import CatalogueOptimizer


def adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    p, g, t = param(), grad(), step()
    beta1, beta2 = betas
    g = (-g if maximize else g) + weight_decay * p
    m = lerp(state("exp_avg"), g, 1 - beta1)
    u = maximum(beta2 * state("exp_inf"), abs(g) + eps)
    return Rule(p - lr / (1 - beta1**t) * m / u, exp_avg=m, exp_inf=u)


class Adamax(CatalogueOptimizer):
    """Adam with an infinity-norm second moment (torch.optim.Adamax semantics)."""

    rule = adamax
    source = "Kingma & Ba (2015), arXiv:1412.6980 sec. 7.1; torch.optim.Adamax"
    torch_flags = {"foreach": None, "differentiable": False, "capturable": False}
