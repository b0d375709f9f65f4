"""Signum matches a plain-torch implementation of Bernstein et al. (2018), Algorithm 3.

m <- beta m + (1 - beta) (g + wd p);  p <- p - lr sign(m)
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceSignum(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, momentum=0.9, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta = group["momentum"]
            for p in group["params"]:
                g = p.grad + group["weight_decay"] * p
                m = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                m.mul_(beta).add_(g, alpha=1 - beta)
                p.add_(torch.sign(m), alpha=-group["lr"])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(lr=1e-3), dict(lr=2e-3, momentum=0.5, weight_decay=0.1)],
                         ids=["default", "decay"])
def test_signum_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.Signum(ps, backend=backend, **kw),
                                       lambda ps: ReferenceSignum(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6
