"""Proximal SGD matches plain-torch prox steps p <- prox_{lr R}(p - lr g), written here:

    l1:      soft-threshold  sign(x) max(|x| - lr l1, 0)
    box:     clamp(x, lower, upper)
    nonneg:  max(x, 0)
and behaves as a proximal method: exact zeros, iterates always feasible, and on a
separable quadratic the fixed point is the regularised minimiser.
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side

PROX = {
    optforge.ProxSGDL1: lambda x, grp: torch.sign(x) * torch.clamp(x.abs() - grp["lr"] * grp["l1"],
                                                                   min=0),
    optforge.ProxSGDBox: lambda x, grp: torch.clamp(x, grp["lower"], grp["upper"]),
    optforge.ProxSGDNonNeg: lambda x, grp: torch.clamp(x, min=0),
}


class ReferenceProxSGD(torch.optim.Optimizer):
    def __init__(self, params, prox, **group):
        super().__init__(params, group)
        self.prox = prox

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(self.prox(p - group["lr"] * p.grad, group))


# test parameters are N(0, 1) pulled to a centre in [1, 2]: these settings make the
# threshold / bounds active on a good fraction of coordinates
CASES = [(optforge.ProxSGDL1, dict(lr=0.1, l1=2.0)),
         (optforge.ProxSGDL1, dict(lr=0.05, l1=0.5)),
         (optforge.ProxSGDBox, dict(lr=0.1, lower=-0.5, upper=1.2)),
         (optforge.ProxSGDBox, dict(lr=0.05, lower=0.0, upper=2.0)),
         (optforge.ProxSGDNonNeg, dict(lr=0.1))]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls,kw", CASES, ids=lambda x: getattr(x, "__name__", "") or "-".join(map(str, x.values())))
def test_prox_sgd_matches_reference(cls, kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: cls(ps, backend=backend, **kw),
                                       lambda ps: ReferenceProxSGD(ps, PROX[cls], **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def _run(cls, a, steps=200, check=None, **kw):
    """Prox-SGD on f(p) = |p - a|^2 / 2 plus noise that dies out geometrically (so the
    iterates settle on the fixed point); ``check`` runs after every step."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(a.shape, generator=gen))
    opt = cls([p], **kw)
    for k in range(steps):
        p.grad = p.detach() - a + torch.randn(a.shape, generator=gen) * 0.95**k
        opt.step()
        if check is not None:
            check(p.detach())
    return p.detach()


def test_l1_gives_exact_zeros_and_the_lasso_solution():
    # argmin |p - a|^2/2 + l1 |p|_1 is soft_threshold(a, l1): exact zeros where |a| <= l1
    a = torch.linspace(-3, 3, 1001)
    p = _run(optforge.ProxSGDL1, a, lr=0.2, l1=1.0)
    lasso = torch.sign(a) * torch.clamp(a.abs() - 1.0, min=0)
    assert torch.equal(p == 0, lasso == 0) and (p == 0).sum() > 300
    assert torch.allclose(p, lasso, atol=1e-4)


def test_box_iterates_stay_in_bounds_and_reach_the_projection():
    def in_box(p):
        assert p.min() >= -0.5 and p.max() <= 1.2
    a = torch.linspace(-3, 3, 1001)
    p = _run(optforge.ProxSGDBox, a, check=in_box, lr=0.2, lower=-0.5, upper=1.2)
    assert torch.allclose(p, a.clamp(-0.5, 1.2), atol=1e-4)


def test_nonneg_iterates_stay_nonnegative_and_reach_the_projection():
    def nonneg(p):
        assert p.min() >= 0
    a = torch.linspace(-3, 3, 1001)
    p = _run(optforge.ProxSGDNonNeg, a, check=nonneg, lr=0.2)
    assert torch.allclose(p, a.clamp(min=0), atol=1e-4)
