"""COCOB-Backprop matches a plain-torch implementation of Orabona & Tommasi (2017),
Algorithm 2 (the coin outcome is the negative gradient -g):

    L <- max(L, |g|);  G <- G + |g|;  R <- max(R - (w - w_1) g, 0);  theta <- theta - g
    w <- w_1 + theta (L + R) / (L max(G + L, alpha L))

with L_0 = eps as in the authors' code, and behaves as a parameter-free method.
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceCOCOB(torch.optim.Optimizer):
    def __init__(self, params, alpha=100.0, eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(alpha=alpha, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for w in group["params"]:
                s = self.state[w]
                if not s:
                    s.update(w1=w.clone(), L=torch.full_like(w, group["eps"]),
                             G=torch.zeros_like(w), R=torch.zeros_like(w),
                             theta=torch.zeros_like(w))
                g = w.grad + group["weight_decay"] * w
                s["L"] = torch.maximum(s["L"], g.abs())
                s["G"] = s["G"] + g.abs()
                s["R"] = torch.clamp(s["R"] - (w - s["w1"]) * g, min=0)
                s["theta"] = s["theta"] - g
                L = s["L"]
                bet = s["theta"] / (L * torch.maximum(s["G"] + L, group["alpha"] * L))
                w.copy_(s["w1"] + bet * (L + s["R"]))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(alpha=5.0, weight_decay=0.1)], ids=["default", "alpha5"])
def test_cocob_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.COCOB(ps, backend=backend, **kw),
                                       lambda ps: ReferenceCOCOB(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def _quadratic(scale, steps=300, alpha=100.0):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, generator=gen)
    w = torch.nn.Parameter(torch.zeros(256))
    opt = optforge.COCOB([w], alpha=alpha)
    losses = []
    for _ in range(steps):
        losses.append(0.5 * ((w.detach() - a) ** 2).sum().item())
        w.grad = scale * (w.detach() - a)
        opt.step()
    return w.detach(), losses


def test_minimises_a_quadratic_without_a_learning_rate():
    _, losses = _quadratic(1.0)
    assert losses[-1] < 1e-3 * losses[0]


def test_is_invariant_to_the_gradient_scale():
    # every bet is a ratio of gradient sums, so scaling the loss by 1000 changes nothing
    # (up to the eps that starts L): no learning rate to retune
    w1, _ = _quadratic(1.0)
    w1000, _ = _quadratic(1000.0)
    assert norm_rel(w1000, w1) < 1e-5
