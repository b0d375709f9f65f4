"""Exponentiated gradient vs the textbook update written directly in plain torch:

    p <- p exp(-lr g) / sum(p exp(-lr g))          (per tensor, or per row with per_row)

and its stabilisation: where that formula under/overflows (lr |g| beyond float32's exp range),
the rule still gives the exact answer, softmax(log p - lr g) over the support of p.
"""
import pytest
import torch

from optforge.catalogue.exponentiated_gradient import ExponentiatedGradient
from tests.conftest import SHAPES, norm_rel


def _rows(x, per_row):
    return x.reshape(x.shape[0], -1) if per_row else x.reshape(1, -1)


class RefEG(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, maximize=False, per_row=False):
        super().__init__(params, dict(lr=lr, maximize=maximize, per_row=per_row))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = -p.grad if group["maximize"] else p.grad
                w = _rows(p * torch.exp(-group["lr"] * g), group["per_row"])
                p.copy_((w / w.sum(1, keepdim=True)).reshape(p.shape))


CASES = {"default": dict(), "lr_maximize": dict(lr=0.5, maximize=True),
         "per_row": dict(lr=0.3, per_row=True)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_textbook_update(shape, case, backend):
    kw = CASES[case]
    per_row = kw.get("per_row", False)
    gen = torch.Generator().manual_seed(0)
    init = torch.softmax(_rows(torch.randn(shape, generator=gen), per_row), 1).reshape(shape)
    ours, ref = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    o1, o2 = ExponentiatedGradient([ours], backend=backend, **kw), RefEG([ref], **kw)
    for _ in range(20):
        g = torch.randn(shape, generator=gen) + 0.3
        ours.grad, ref.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert norm_rel(ours.detach(), ref.detach()) < 1e-6
    sums = _rows(ours.detach(), per_row).sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_extreme_steps_stay_exact_where_the_textbook_formula_breaks():
    p0 = torch.tensor([0.5, 0.25, 0.25, 0.0, 0.0])
    g = torch.tensor([300.0, 200.0, 250.0, -500.0, 1e4])  # best action has no weight
    expected = torch.softmax(torch.log(p0.double()) - g.double(), 0).float()
    naive = p0 * torch.exp(-g)
    assert not torch.isfinite(naive / naive.sum()).all()  # 0/0 in float32
    x = torch.nn.Parameter(p0.clone())
    opt = ExponentiatedGradient([x], lr=1.0)
    x.grad = g
    opt.step()
    assert torch.allclose(x.detach(), expected, atol=1e-6)
    assert x[3] == 0 and x[4] == 0  # coordinates at 0 stay at 0


def test_converges_to_the_best_action():
    # fixed losses: the weight of the best action tends to 1 like exp(-lr t gap)
    x = torch.nn.Parameter(torch.full((4,), 0.25))
    opt = ExponentiatedGradient([x], lr=0.5)
    losses = torch.tensor([1.0, 0.2, 0.7, 0.5])
    for _ in range(80):
        x.grad = losses
        opt.step()
    expected = torch.softmax(-0.5 * 80 * losses.double(), 0).float()
    assert torch.allclose(x.detach(), expected, atol=1e-6) and x[1] > 0.9999
