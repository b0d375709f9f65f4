"""LARS vs a plain-torch implementation of You, Gitman & Ginsburg (2017), Algorithm 1, and vs
pytorch-optimizer's LARS.

Reference, from the paper: local_lr = eta ||p|| / (||g|| + wd ||p||) (1 where ||p|| or the
denominator is 0); v <- momentum v + lr local_lr (g + wd p); p <- p - v.

pytorch-optimizer conventions:
- lr outside the buffer (b <- momentum b + (1 - dampening) u; p <- p - lr b): with a
  constant lr and dampening 0 its buffer is ours divided by lr, so the iterates agree;
- tensors with ndim <= 1 get plain momentum SGD with no weight decay and no local lr: our
  adaptive=False, given to those tensors through their own param group.
"""
import pytest
import torch
from pytorch_optimizer import LARS as POLARS

from optforge.catalogue.lars import LARS
from tests.catalogue.group_side_by_side import group_rel, run_group_side_by_side
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefLARS(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      eta=trust_coefficient, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                g = -p.grad if group["maximize"] else p.grad
                w_norm, g_norm = p.norm(), g.norm()
                denom = g_norm + wd * w_norm
                local = group["eta"] * w_norm / denom if w_norm > 0 and denom > 0 else 1.0
                v = self.state[p].setdefault("v", torch.zeros_like(p))
                v.mul_(group["momentum"]).add_(group["lr"] * local * (g + wd * p))
                p.sub_(v)


CASES = {"default": dict(lr=1.0),
         "decay_maximize": dict(lr=2.0, momentum=0.8, weight_decay=0.01, trust_coefficient=2e-3,
                                maximize=True),
         "no_momentum": dict(lr=1.0, momentum=0.0, weight_decay=1e-3)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lars_matches_paper(shape, case, backend):
    kw = CASES[case]
    ours, ref, _, _ = run_side_by_side(lambda ps: LARS(ps, backend=backend, **kw),
                                       lambda ps: RefLARS(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_lars_matches_pytorch_optimizer(backend):
    kw = dict(lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=1e-3)

    def ours(ps):
        multi = [p for p in ps if p.dim() > 1]
        flat = [p for p in ps if p.dim() <= 1]
        return LARS([dict(params=multi), dict(params=flat, adaptive=False)],
                    backend=backend, **kw)

    mine, ref = run_group_side_by_side(ours, lambda ps: POLARS(ps, foreach=False, **kw))
    for p, q in zip(mine, ref):
        assert norm_rel(p, q) < 1e-6
    assert group_rel(mine, ref) < 1e-6


def test_local_lr_is_one_for_zero_weights():
    p = torch.nn.Parameter(torch.zeros(5))
    p.grad = torch.full((5,), 2.0)
    LARS([p], lr=0.1, trust_coefficient=1e-3).step()
    assert torch.allclose(p.detach(), torch.full((5,), -0.2))
