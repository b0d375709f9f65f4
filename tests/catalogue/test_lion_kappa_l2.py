"""Lion-K with K = ||x||_2 vs a plain-torch implementation of Chen, Liu, Liang & Liu (2023),
arXiv:2310.05898, in Lion's Algorithm 2 form:

    c = b1 m + (1 - b1) g;  p <- p - lr (c / ||c|| + wd p);  m <- b2 m + (1 - b2) g

with ||c|| over the whole param group (or each tensor, per_tensor=True), and dK(0) = 0.
"""
import pytest
import torch

from optforge.catalogue.lion_kappa_l2 import LionKappaL2
from tests.catalogue.group_side_by_side import group_rel, run_group_side_by_side
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefLionL2(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, per_tensor=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      per_tensor=per_tensor, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            ps = group["params"]
            grads = [-p.grad if group["maximize"] else p.grad for p in ps]
            ms = [self.state[p].setdefault("m", torch.zeros_like(p)) for p in ps]
            cs = [b1 * m + (1 - b1) * g for m, g in zip(ms, grads)]
            total = torch.cat([c.reshape(-1) for c in cs]).norm()
            for p, g, m, c in zip(ps, grads, ms, cs):
                n = c.norm() if group["per_tensor"] else total
                dk = c / n if n > 0 else torch.zeros_like(c)
                p.sub_(group["lr"] * (dk + group["weight_decay"] * p))
                m.mul_(b2).add_(g, alpha=1 - b2)


CASES = {"default": dict(lr=0.05), "decay": dict(lr=0.05, betas=(0.8, 0.95), weight_decay=0.5),
         "per_tensor": dict(lr=0.02, weight_decay=0.1, per_tensor=True),
         "maximize": dict(lr=0.02, weight_decay=0.1, maximize=True)}


@pytest.mark.parametrize("case", CASES)
def test_group_matches_reference(case, backend):
    kw = CASES[case]
    ours, refs = run_group_side_by_side(lambda ps: LionKappaL2(ps, backend=backend, **kw),
                                        lambda ps: RefLionL2(ps, **kw))
    for p, q in zip(ours, refs):
        assert norm_rel(p, q) < 1e-6
    assert group_rel(ours, refs) < 1e-6


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_single_tensor_matches_reference(shape, backend):
    kw = dict(lr=0.05, weight_decay=0.1)
    ours, ref, _, _ = run_side_by_side(lambda ps: LionKappaL2(ps, backend=backend, **kw),
                                       lambda ps: RefLionL2(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_update_has_norm_lr_and_zero_momentum_gives_no_step():
    p = torch.nn.Parameter(torch.randn(6, 7))
    start = p.detach().clone()
    p.grad = torch.randn(6, 7)
    opt = LionKappaL2([p], lr=0.1)
    opt.step()
    assert torch.allclose((p.detach() - start).norm(), torch.tensor(0.1), rtol=1e-5)
    q = torch.nn.Parameter(torch.ones(3))
    q.grad = torch.zeros(3)
    LionKappaL2([q], lr=0.1).step()
    assert torch.equal(q.detach(), torch.ones(3))
