"""SGDP — Heo et al. (2021), arXiv:2006.08217, Algorithm 1 and the official code
(github.com/clovaai/AdamP), seed 002:72: momentum SGD whose update loses its radial
component on scale-invariant weights (see ``adamp.radial_projection``).

b <- momentum b + (1 - dampening) g;  u = g + momentum b (nesterov) or b;  u, r = proj(u)
p <- p (1 - lr wd r / (1 - momentum)) - lr u
As in the official code the buffer (state ``momentum``) starts at zero and is damped from
the first step, and the decay is divided by (1 - momentum); torch.optim.SGD differs on both.
"""
from ..dsl import Rule, grad, param, state
from ._base import CatalogueOptimizer
from .adamp import radial_projection


def sgdp(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, eps=1e-8,
         delta=0.1, wd_ratio=0.1):
    p, g = param(), grad()
    buf = momentum * state("momentum") + (1 - dampening) * g
    u, ratio = radial_projection(g + momentum * buf if nesterov else buf, p, g, delta,
                                 wd_ratio, eps)
    return Rule(p * (1 - lr * weight_decay * ratio / (1 - momentum)) - lr * u, momentum=buf)


class SGDP(CatalogueOptimizer):
    """Momentum SGD with the radial component removed on scale-invariant weights."""

    rule = sgdp
    source = "Heo et al. (2021), arXiv:2006.08217, Algorithm 1; official clovaai/AdamP code"
