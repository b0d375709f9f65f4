"""beta-normalized GD vs a plain-torch implementation of Chen, Zhou, Liang & Lu (2023),
arXiv:2303.02854: p <- p - lr g / ||g||^beta, ||g|| over the whole param group (or each
tensor with per_tensor=True); a zero gradient gives a zero step.
"""
import pytest
import torch

from optforge.catalogue.normalized_gd import BetaNormalizedGD
from tests.catalogue.group_side_by_side import group_rel, run_group_side_by_side
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefBetaNormalizedGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, beta=1.0, per_tensor=False):
        super().__init__(params, dict(lr=lr, beta=beta, per_tensor=per_tensor))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            ps = group["params"]
            total = torch.cat([p.grad.reshape(-1) for p in ps]).norm()
            for p in ps:
                n = p.grad.norm() if group["per_tensor"] else total
                if n > 0:
                    p.sub_(group["lr"] * p.grad / n ** group["beta"])


CASES = {"normalized": dict(lr=0.05), "half": dict(lr=0.01, beta=0.5),
         "gd": dict(lr=0.01, beta=0.0), "per_tensor": dict(lr=0.05, beta=0.7, per_tensor=True)}


@pytest.mark.parametrize("case", CASES)
def test_group_matches_reference(case, backend):
    kw = CASES[case]
    ours, refs = run_group_side_by_side(lambda ps: BetaNormalizedGD(ps, backend=backend, **kw),
                                        lambda ps: RefBetaNormalizedGD(ps, **kw))
    for p, q in zip(ours, refs):
        assert norm_rel(p, q) < 1e-6
    assert group_rel(ours, refs) < 1e-6


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_single_tensor_matches_reference(shape, backend):
    kw = dict(lr=0.05, beta=0.8)
    ours, ref, _, _ = run_side_by_side(lambda ps: BetaNormalizedGD(ps, backend=backend, **kw),
                                       lambda ps: RefBetaNormalizedGD(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_beta_one_moves_by_exactly_lr_and_zero_gradient_does_not_move():
    p, q = torch.nn.Parameter(torch.randn(30)), torch.nn.Parameter(torch.randn(4, 5))
    start = [p.detach().clone(), q.detach().clone()]
    p.grad, q.grad = torch.randn(30), torch.randn(4, 5)
    opt = BetaNormalizedGD([p, q], lr=0.1, beta=1.0)
    opt.step()
    moved = torch.cat([(p.detach() - start[0]).reshape(-1), (q.detach() - start[1]).reshape(-1)])
    assert torch.allclose(moved.norm(), torch.tensor(0.1), rtol=1e-5)
    before = [p.detach().clone(), q.detach().clone()]
    p.grad, q.grad = torch.zeros(30), torch.zeros(4, 5)
    opt.step()
    assert torch.equal(p.detach(), before[0]) and torch.equal(q.detach(), before[1])
