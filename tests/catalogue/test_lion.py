"""Lion matches a plain-torch implementation of Chen et al. (2023), Algorithm 2.

The reference is written here from the paper, independent of the DSL:
    c = b1 m + (1 - b1) g;   p <- p - lr (sign(c) + wd p);   m <- b2 m + (1 - b2) g
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceLion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                c = b1 * m + (1 - b1) * p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(c), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(lr=1e-3), dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)],
                         ids=["default", "decay"])
def test_lion_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.Lion(ps, backend=backend, **kw),
                                       lambda ps: ReferenceLion(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_lion_update_magnitude_is_lr():
    # Every coordinate moves by exactly lr (sign update) when weight decay is 0.
    p = torch.nn.Parameter(torch.zeros(100))
    opt = optforge.Lion([p], lr=0.01)
    p.grad = torch.randn(100)
    opt.step()
    assert torch.allclose(p.detach().abs(), torch.full((100,), 0.01))
