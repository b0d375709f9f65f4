"""Cauchy-Schwarz regularisers as transforms vs SGD on the loss plus lambda * l, with the
regulariser's gradient taken by torch autograd from its definition (Taner, Wang & Studer
2025), not from the hand-derived gradients the transforms use:

    binary            l = N sum x^4 - (sum x^2)^2
    ternary           l = (sum x^2)(sum x^6) - (sum x^4)^2
    one-sided binary  l = (sum x^2)(sum x^4) - (sum x^3)^2

per tensor (N = numel) or per row of the (shape[0], -1) view, summed over rows.
"""
import math

import pytest
import torch

import optforge
from optforge.dsl import chain, scale_by_adam, scale_by_lr
from tests.conftest import SHAPES, available_backends, norm_rel, run_side_by_side


def l_binary(x):
    return x.shape[-1] * (x**4).sum(-1) - (x**2).sum(-1) ** 2


def l_ternary(x):
    return (x**2).sum(-1) * (x**6).sum(-1) - (x**4).sum(-1) ** 2


def l_one_sided(x):
    return (x**2).sum(-1) * (x**4).sum(-1) - (x**3).sum(-1) ** 2


REGS = {"binary": (optforge.cs_binary, "lambda_bin", l_binary),
        "ternary": (optforge.cs_ternary, "lambda_ter", l_ternary),
        "one_sided": (optforge.cs_one_sided_binary, "lambda_osb", l_one_sided)}


def _view(x, over):
    return x.reshape(x.shape[0], -1) if over == "row" else x.reshape(1, -1)


class RefRegularisedSGD(torch.optim.Optimizer):
    def __init__(self, params, reg, lam, over, lr):
        super().__init__(params, dict(lr=lr))
        self.reg, self.lam, self.over = reg, lam, over

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                x = p.detach().clone().requires_grad_(True)
                (reg_grad,) = torch.autograd.grad(self.reg(_view(x, self.over)).sum(), x)
                with torch.no_grad():
                    p.sub_(group["lr"] * (p.grad + self.lam * reg_grad))


@pytest.mark.parametrize("over", ["tensor", "row"])
@pytest.mark.parametrize("name", REGS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_transform_adds_the_regulariser_gradient(shape, name, over):
    make, key, reg = REGS[name]
    if over == "row" and len(shape) == 1:
        shape = (1,) + shape
    n = _view(torch.empty(shape), over).shape[1]
    lam = 0.02 / n  # the gradients grow like N x^3: lam * grad is O(0.1-1), as g
    for backend in available_backends() + ["auto"]:
        ours, ref, _, _ = run_side_by_side(
            lambda ps: optforge.Optimizer(ps, chain(make(over=over), scale_by_lr(lr=0.05)),
                                          backend=backend, **{key: lam}),
            lambda ps: RefRegularisedSGD(ps, reg, lam, over, lr=0.05), shape)
        assert norm_rel(ours, ref) < 1e-6, backend


def test_binary_regulariser_alone_makes_each_row_binary_at_its_own_scale():
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([[0.5], [1.0], [3.0]])
    init = scales * torch.randn(3, 64, generator=gen)
    x = torch.nn.Parameter(init.clone())
    opt = optforge.Optimizer([x], chain(optforge.cs_binary(over="row"), scale_by_lr(lr=1.0)),
                             lambda_bin=1e-4)
    before = l_binary(x.detach()) / x.detach().pow(2).sum(1) ** 2
    for _ in range(3000):
        x.grad = torch.zeros_like(x)  # no data loss: only the regulariser moves x
        opt.step()
    a = x.detach().abs()
    after = l_binary(x.detach()) / x.detach().pow(2).sum(1) ** 2  # scale-free: 0 iff binary
    assert (after < 1e-6 * before).all()
    assert ((a.max(1).values - a.min(1).values) / a.mean(1) < 1e-3).all()
    # no scale is imposed: each row settles at its own level, in proportion to its initial
    # rms (the flow shrinks ||x||, since <grad l, x> = 4 l >= 0; measured ratios 0.56, 0.47,
    # 0.55 for row scales 0.5, 1, 3)
    ratio = a.mean(1) / init.pow(2).mean(1).sqrt()
    assert (ratio > 0.3).all() and ratio.max() / ratio.min() < 1.3


def test_ternary_regulariser_in_an_adam_chain_gives_three_levels():
    gen = torch.Generator().manual_seed(1)
    x = torch.nn.Parameter(torch.randn(200, generator=gen))
    # backend="torch": 4000 Adam steps amplify last-bit differences between backends, and
    # on numba this start falls into the other minimiser of l, x = 0 (both backends match
    # the reference over 20 steps above)
    opt = optforge.Optimizer([x], chain(optforge.cs_ternary(), scale_by_adam(),
                                        scale_by_lr(lr=1e-2)), lambda_ter=1.0, backend="torch")

    def scale_free(x):  # 0 iff x is in {-a, 0, a}^N for some a
        # in float64: l is a difference of 8th-degree sums, whose float32 cancellation
        # floor (2.4e-6 of the start value here) would hide the converged shape
        x = x.double()
        return float(l_ternary(x) / x.pow(2).sum() ** 4 * x.numel())

    before = scale_free(x.detach())
    for _ in range(4000):
        x.grad = torch.zeros_like(x)
        opt.step()
    a = x.detach().abs()
    level = a.max()
    assert scale_free(x.detach()) < 1e-6 * before
    assert (torch.minimum(a, (a - level).abs()) < 1e-3 * level).all()
    assert (a < 1e-3 * level).sum() > 20 and (a > 0.999 * level).sum() > 10  # both levels used


def l_orthogonal(x):
    """d ||X^T X||_F^2 - ||X||_F^4 on the (rows, cols) view, d = min(rows, cols)."""
    x = x.reshape(x.shape[0], -1)
    return min(x.shape) * (x.T @ x).pow(2).sum() - x.pow(2).sum() ** 2


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (8, 3, 3, 3)], ids=str)
def test_orthogonal_transform_adds_the_regulariser_gradient(shape, backend):
    """chain(cs_orthogonal(), scale_by_lr()) vs SGD on loss + lambda * l with l's gradient
    from autograd, 20 steps (a matrix rule: X X^T X and ||X||_F in the matrix stage)."""
    lam = 0.02 / min(shape[0], math.prod(shape[1:]))
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, chain(optforge.cs_orthogonal(), scale_by_lr(lr=0.05)),
                                      backend=backend, lambda_orth=lam),
        lambda ps: RefRegularisedSGD(ps, lambda v: l_orthogonal(v.reshape(shape)), lam,
                                     "tensor", lr=0.05), shape)
    assert norm_rel(ours, ref) < 1e-6


@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (8, 8)], ids=str)
def test_orthogonal_regulariser_alone_reaches_a_scaled_orthogonal_matrix(shape):
    """From a random start, gradient descent on l alone: X X^T (wide) or X^T X (tall)
    becomes c I for some scale c the regulariser does not impose."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.Parameter(torch.randn(shape, generator=gen))
    opt = optforge.Optimizer([x], chain(optforge.cs_orthogonal(), scale_by_lr(lr=1.0)),
                             lambda_orth=1e-3)
    before = float(l_orthogonal(x.detach().double()) / x.detach().double().pow(2).sum() ** 2)
    for _ in range(2000):
        x.grad = torch.zeros_like(x)
        opt.step()
    w = x.detach().double()
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    c = gram.diagonal().mean()
    assert float(l_orthogonal(w) / w.pow(2).sum() ** 2) < 1e-6 * before
    assert (gram / c - torch.eye(gram.shape[0], dtype=torch.float64)).abs().max() < 1e-3
    assert c > 0.1  # not collapsed to zero
