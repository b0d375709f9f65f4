"""Extragradient against a plain-torch reference of Korpelevich's two half-steps
    x_half = x -/+ lr g(x),   x_new = x -/+ lr g(x_half)
(minus on minimizing groups, plus on ``maximize`` ones, each group with its own lr), on
every backend; it converges on a bilinear game where simultaneous GDA diverges.
"""
import copy

import pytest
import torch

import optforge
from optforge.multistep import Extragradient
from tests.conftest import norm_rel

SHAPES_XY = [((1,), (1023,)), ((7, 13), (5,)), ((257, 129), (3, 2))]


def smooth_game(shape_x, shape_y, seed=0, dtype=torch.float32):
    """f = 0.5 a|x|^2 + <sin(x) * w, 1> * <tanh(y), v> + <x-ish, y-ish> - 0.5 b|y|^2: smooth,
    non-quadratic, coupled."""
    gen = torch.Generator().manual_seed(seed)
    nx, ny = torch.Size(shape_x).numel(), torch.Size(shape_y).numel()
    k = min(nx, ny)
    w = torch.randn(shape_x, generator=gen).to(dtype)
    v = torch.randn(shape_y, generator=gen).to(dtype) / ny ** 0.5
    x0 = torch.randn(shape_x, generator=gen).to(dtype)
    y0 = torch.randn(shape_y, generator=gen).to(dtype)

    def f(x, y):
        coupling = (x.reshape(-1)[:k] * y.reshape(-1)[:k]).sum()
        return (0.5 * (x * x).sum() + (torch.sin(x) * w).sum() * (torch.tanh(y) * v).sum()
                + coupling - 0.25 * (y * y).sum())
    return f, x0, y0


def reference_extragradient(f, x, y, lr_x, lr_y, steps):
    x, y = x.clone(), y.clone()
    for _ in range(steps):
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        gx, gy = torch.autograd.grad(f(xr, yr), (xr, yr))
        xh, yh = (x - lr_x * gx).requires_grad_(), (y + lr_y * gy).requires_grad_()
        gx, gy = torch.autograd.grad(f(xh, yh), (xh, yh))
        x, y = x - lr_x * gx, y + lr_y * gy
    return x, y


def run_ours(f, x0, y0, steps, backend, lr=0.05, lr_max=0.1):
    x, y = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(y0.clone())
    opt = Extragradient([dict(params=[x]), dict(params=[y], maximize=True)], lr=lr,
                        lr_max=lr_max, backend=backend)

    def closure():
        opt.zero_grad()
        loss = f(x, y)
        loss.backward()
        return loss
    for _ in range(steps):
        opt.step(closure)
    return x.detach(), y.detach(), opt


@pytest.mark.parametrize("shapes", SHAPES_XY, ids=str)
def test_matches_reference_and_torch_backend(shapes, backend):
    f, x0, y0 = smooth_game(*shapes)
    x, y, opt = run_ours(f, x0, y0, 10, backend)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[1]["lr"] == 0.1
    rx, ry = reference_extragradient(f, x0, y0, 0.05, 0.1, 10)
    # float32: the reference's x - lr g and the kernel's agree to rounding, amplified
    # by 20 gradient evaluations through sin/tanh
    assert norm_rel(x, rx) < 1e-5 and norm_rel(y, ry) < 1e-5
    tx, ty, _ = run_ours(f, x0, y0, 10, "torch")
    assert norm_rel(x, tx) < 1e-6 and norm_rel(y, ty) < 1e-6


def test_float64_matches_reference_tightly():
    f, x0, y0 = smooth_game((7, 13), (5,), dtype=torch.float64)
    x, y, _ = run_ours(f, x0, y0, 10, "torch")
    rx, ry = reference_extragradient(f, x0, y0, 0.05, 0.1, 10)
    assert norm_rel(x, rx) < 1e-13 and norm_rel(y, ry) < 1e-13


def bilinear(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    A = q @ torch.diag(torch.linspace(1.0, 2.0, n, dtype=torch.float64)) @ q.T  # cond 2
    x = torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
    y = torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
    return A, x, y


def test_bilinear_game_extragradient_converges_gda_diverges():
    A, x, y = bilinear()
    start = torch.cat([x, y]).norm().item()
    xg, yg = (torch.nn.Parameter(t.detach().clone()) for t in (x, y))
    gda = optforge.SGD([dict(params=[xg]), dict(params=[yg], maximize=True)], lr=0.2,
                       backend="torch")
    eg = Extragradient([dict(params=[x]), dict(params=[y], maximize=True)], lr=0.2,
                       backend="torch")
    for _ in range(300):
        gda.zero_grad()
        (xg @ A @ yg).backward()
        gda.step()
        eg.step(lambda: (eg.zero_grad(), (x @ A @ y).backward(), x @ A @ y)[-1])
    # GDA multiplies the distance to the saddle by sqrt(1 + lr^2 s^2) > 1 per step
    # (s: singular values of A, 1..2): over 300 steps at least 1.02^300 ~ 380
    assert torch.cat([xg, yg]).norm().item() > 300 * start
    # extragradient contracts by sqrt(1 - lr^2 s^2 + lr^4 s^4) <= 0.981 per step
    assert torch.cat([x, y]).norm().item() < 1e-2 * start


def test_group_lr_wins_over_lr_max_and_state_dict_round_trip():
    f, x0, y0 = smooth_game((4,), (3,))
    x, y = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(y0.clone())
    opt = Extragradient([dict(params=[x]), dict(params=[y], maximize=True, lr=0.3)], lr=0.1,
                        lr_max=0.2, backend="torch")
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.3]
    closure = lambda: (opt.zero_grad(), f(x, y).backward(), f(x, y))[-1]
    opt.step(closure)
    sd = copy.deepcopy(opt.state_dict())
    x2, y2 = torch.nn.Parameter(x.detach().clone()), torch.nn.Parameter(y.detach().clone())
    opt2 = Extragradient([dict(params=[x2]), dict(params=[y2], maximize=True)], lr=1.0,
                         backend="torch")
    opt2.load_state_dict(sd)
    assert [g["lr"] for g in opt2.param_groups] == [0.1, 0.3]
    assert [g["maximize"] for g in opt2.param_groups] == [False, True]
    closure2 = lambda: (opt2.zero_grad(), f(x2, y2).backward(), f(x2, y2))[-1]
    for _ in range(3):
        opt.step(closure)
        opt2.step(closure2)
    assert torch.equal(x.detach(), x2.detach()) and torch.equal(y.detach(), y2.detach())


def test_maximize_flag_changed_between_steps_is_followed():
    x = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Extragradient([x], lr=0.1, backend="torch")
    closure = lambda: (opt.zero_grad(), (x * x).sum().backward(), (x * x).sum())[-1]
    opt.step(closure)                     # descent: 1 - 0.2 (1 - 0.2) = 0.84
    assert x.item() == pytest.approx(0.84, rel=1e-6)
    opt.param_groups[0]["maximize"] = True
    opt.step(closure)                     # ascent: 0.84 (1 + 0.2 (1 + 0.2)) = 1.0416
    assert x.item() == pytest.approx(0.84 * 1.24, rel=1e-6)


def test_clear_errors():
    x = torch.nn.Parameter(torch.ones(3))
    opt = Extragradient([x], lr=0.1)
    with pytest.raises(TypeError, match="Extragradient.step.. needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="scalar loss.*shape \\(3,\\)"):
        opt.step(lambda: x * 2)
    with pytest.raises(RuntimeError, match="no parameter has a gradient"):
        opt.step(lambda: (x * 2).sum().detach())
    with pytest.raises(TypeError, match="unknown key.*'momentum'"):
        Extragradient([dict(params=[x], momentum=0.9)])
    with pytest.raises(ValueError, match="lr_max = -1"):
        Extragradient([x], lr_max=-1)
    with pytest.raises(optforge.BackendError, match="unknown backend .cuda-magic."):
        Extragradient([x], backend="cuda-magic")
