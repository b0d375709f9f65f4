"""FTRL-Proximal matches a plain-torch implementation of McMahan et al. (2013), Algorithm 1:

    sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;   z <- z + g - sigma w;   n <- n + g^2
    w <- 0 if |z| <= l1 else -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)

(alpha is ``lr``; w is the parameter), and gives the sparsity the l1 term is for.
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceFTRL(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, beta=1.0, l1=0.0, l2=0.0):
        super().__init__(params, dict(lr=lr, beta=beta, l1=l1, l2=l2))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            alpha, beta, l1, l2 = (group[k] for k in ("lr", "beta", "l1", "l2"))
            for w in group["params"]:
                state, g = self.state[w], w.grad
                if not state:
                    state.update(z=torch.zeros_like(w), n=torch.zeros_like(w))
                z, n = state["z"], state["n"]
                sigma = ((n + g * g).sqrt() - n.sqrt()) / alpha
                z.add_(g - sigma * w)
                n.add_(g * g)
                dense = -(z - torch.sign(z) * l1) / ((beta + n.sqrt()) / alpha + l2)
                w.copy_(torch.where(z.abs() <= l1, torch.zeros_like(w), dense))


# l1 = 10 on these O(1) gradients zeroes about a fifth of the coordinates after 20 steps
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(lr=0.5, beta=0.5, l1=10.0, l2=0.2)],
                         ids=["default", "l1-l2"])
def test_ftrl_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.FTRL(ps, backend=backend, **kw),
                                       lambda ps: ReferenceFTRL(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6
    if kw and shape == (257, 129):  # the l1 branch is exercised both ways
        assert 0.05 < (ref == 0).double().mean() < 0.95


def _noisy_quadratic(a, steps, **kw):
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.zeros_like(a))
    opt = optforge.FTRL([w], **kw)
    for _ in range(steps):
        w.grad = w.detach() - a + 0.1 * torch.randn(a.shape, generator=gen)
        opt.step()
    return w.detach()


def test_l1_zeroes_exactly_the_coordinates_without_signal():
    # half the coordinates have a target, half only zero-mean noise: l1 keeps the noise
    # coordinates at exactly 0 while the others get close to their targets
    a = torch.cat([torch.linspace(2, 4, 500), torch.zeros(500)])
    w = _noisy_quadratic(a, 400, lr=1.0, l1=10.0)
    assert (w[500:] == 0).all()
    assert (w[:500] != 0).all() and (w[:500] - a[:500]).abs().max() < 0.15
    dense = _noisy_quadratic(a, 400, lr=1.0)
    assert (dense[500:] != 0).all()   # without l1 the noise coordinates are never exactly 0


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(lr=0.5, beta=0.5, l1=10.0, l2=0.2)],
                         ids=["default", "l1-l2"])
def test_ftrl_matches_pytorch_optimizer(kw, shape, backend):
    # pytorch-optimizer's FTRL is the same Algorithm 1 with lr_power = -0.5 (sqrt(n)); it
    # names l1, l2 lambda_1, lambda_2 and has other defaults, so every value is passed
    po = pytest.importorskip("pytorch_optimizer")
    kw = dict(dict(lr=0.1, beta=1.0, l1=0.0, l2=0.0), **kw)
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.FTRL(ps, backend=backend, **kw),
        lambda ps: po.FTRL(ps, lr=kw["lr"], beta=kw["beta"], lambda_1=kw["l1"], lambda_2=kw["l2"]),
        shape)
    assert norm_rel(ours, ref) < 1e-6
