"""Optimistic gradient descent matches a plain-torch reference of
    p <- p - lr (2 g_t - g_{t-1}),   g_0 = 0
(Daskalakis et al. 2018; Rakhlin & Sridharan 2013 with the first hint M_1 = 0), and, unlike simultaneous gradient descent-ascent, converges on a bilinear game.
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceOptimisticGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                d = p.grad + group["weight_decay"] * p
                prev = self.state[p].get("prev_grad", torch.zeros_like(p))
                p.sub_(group["lr"] * (2 * d - prev))
                self.state[p]["prev_grad"] = d.clone()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(lr=1e-2), dict(lr=0.1, weight_decay=0.3)],
                         ids=["default", "decay"])
def test_optimistic_gd_matches_reference(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.OptimisticGD(ps, backend=backend, **kw),
                                       lambda ps: ReferenceOptimisticGD(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_first_step_uses_a_zero_hint():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = optforge.OptimisticGD([p], lr=0.1)
    p.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.step()
    assert torch.equal(p.detach(), -0.2 * p.grad)


def _bilinear_game(make_opt, steps, n=64):
    """min_x max_y sum(x * y): the unique equilibrium is x = y = 0."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.Parameter(torch.randn(n, generator=gen))
    y = torch.nn.Parameter(torch.randn(n, generator=gen))
    start = torch.cat([x, y]).norm().item()
    opt = make_opt(x, y)
    for _ in range(steps):
        opt.zero_grad()
        (x * y).sum().backward()      # both gradients at the current point: simultaneous play
        opt.step()
    return torch.cat([x, y]).norm().item() / start


def test_optimistic_gda_converges_where_gda_diverges():
    groups = lambda x, y: [dict(params=[x], lr=0.3), dict(params=[y], lr=0.3, maximize=True)]
    # plain simultaneous GDA spirals out: each step multiplies the distance to the
    # equilibrium by exactly sqrt(1 + lr^2)
    gda = _bilinear_game(lambda x, y: optforge.SGD(groups(x, y)), 200)
    assert gda == pytest.approx(1.09**100, rel=1e-3)
    ogda = _bilinear_game(lambda x, y: optforge.OptimisticGD(groups(x, y)), 200)
    assert ogda < 1e-3
