"""NewtonCG against a dense reference (the full Hessian and torch.linalg.solve):
    d = (H + reg I)^-1 g,  delta = sqrt(<g, d>),  x <- x - lr eta d,
    eta = 1 / (1 + delta) (damped), 1 (constant), (sqrt(1 + 2 L delta) - 1) / (L delta) (aicn);
and on a strongly convex L2-regularised logistic regression it reaches a gradient norm
below 1e-10 in a handful of iterations where gradient descent with lr = 1/L is still far
from it after 200.
"""
import copy
import math

import pytest
import torch

import optforge
from optforge.multistep import NewtonCG
from tests.conftest import norm_rel


def logistic(n=200, d=10, mu=1e-2, seed=0, dtype=torch.float64):
    """mean log(1 + exp(-y <a, w>)) + mu/2 |w|^2 on correlated, scaled features."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, 1, d, dtype=torch.float64)
    A = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scales).to(dtype)
    y = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0).to(dtype)

    def f(w):
        return torch.nn.functional.softplus(-y * (A @ w)).mean() + 0.5 * mu * (w * w).sum()
    L = torch.linalg.matrix_norm(A.double(), 2).item() ** 2 / (4 * n) + mu  # H <= L I
    return f, L


def grad_norm(f, w):
    w = w.detach().clone().requires_grad_()
    return torch.autograd.grad(f(w), w)[0].norm().item()


def test_logistic_regression_newton_vs_gradient_descent():
    f, L = logistic()
    w = torch.nn.Parameter(torch.zeros(10, dtype=torch.float64))
    opt = NewtonCG([w], backend="torch")
    newton_iters = None
    for k in range(15):
        opt.step(lambda: f(w))
        if grad_norm(f, w) < 1e-10:
            newton_iters = k + 1
            break
    assert newton_iters is not None and newton_iters < 15
    assert opt.stats["eta"] > 0.99        # the damped step has become the full Newton step

    v = torch.nn.Parameter(torch.zeros(10, dtype=torch.float64))
    gd = optforge.SGD([v], lr=1.0 / L, backend="torch")
    for _ in range(200):
        gd.zero_grad()
        f(v).backward()
        gd.step()
    # condition number L / mu ~ 10^3: GD contracts the error by ~(1 - mu/L) per step.
    # Measured: damped Newton-CG 5 iterations; GD at 200 iterations |g| = 4e-3, and it
    # needs 2207 to reach 1e-10
    assert grad_norm(f, v) > 1e-6, (newton_iters, grad_norm(f, v))


def reference_newton(f, w, steps, lr, reg, schedule, l_semi=1.0):
    w = w.double().clone()
    for _ in range(steps):
        g = torch.autograd.functional.jacobian(f, w)
        H = torch.autograd.functional.hessian(f, w)
        d = torch.linalg.solve(H + reg * torch.eye(w.numel(), dtype=w.dtype), g)
        delta = math.sqrt(float(g @ d))
        eta = {"damped": 1 / (1 + delta), "constant": 1.0,
               "aicn": (math.sqrt(1 + 2 * l_semi * delta) - 1) / (l_semi * delta)}[schedule]
        w = w - lr * eta * d
    return w


def two_tensor_problem(dtype=torch.float64, seed=0):
    """A smooth strongly convex f over two parameters of awkward shapes (coupled)."""
    f1, _ = logistic(n=60, d=21, mu=0.1, seed=seed, dtype=dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    w0 = torch.randn(21, generator=gen, dtype=torch.float64).to(dtype)
    shapes = [(3, 5), (6,)]
    f = lambda w: f1(w) + 0.05 * (w ** 4).sum()
    return f, w0, shapes


@pytest.mark.parametrize("schedule,lr,reg", [("damped", 1.0, 0.0), ("constant", 0.7, 0.3),
                                              ("aicn", 1.0, 0.1)])
def test_matches_dense_reference(schedule, lr, reg):
    f, w0, shapes = two_tensor_problem()
    ps = [torch.nn.Parameter(t.clone().reshape(s))
          for t, s in zip(w0.split([15, 6]), shapes)]
    flat = lambda: torch.cat([p.reshape(-1) for p in ps])
    opt = NewtonCG(ps, lr=lr, reg=reg, schedule=schedule, l_semi=2.0, backend="torch")
    for _ in range(4):
        opt.step(lambda: f(flat()))
    ref = reference_newton(f, w0, 4, lr, reg, schedule, l_semi=2.0)
    # CG to a 1e-10 relative residual on a 21x21 SPD system (a few more than 21
    # iterations in floating point: CG's directions lose conjugacy)
    assert norm_rel(flat().detach(), ref) < 1e-9
    assert 1 <= opt.stats["cg_iterations"] < opt.cg_max_iter and opt.stats["steps"] == 4


def test_every_backend_matches_torch_float32(backend):
    f, w0, _ = two_tensor_problem(dtype=torch.float32, seed=3)
    out = {}
    for name in (backend, "torch"):
        w = torch.nn.Parameter(w0.clone())
        opt = NewtonCG([w], lr=0.8, reg=0.01, backend=name, cg_tol=1e-6)
        for _ in range(4):
            opt.step(lambda: f(w))
        out[name] = w.detach()
    assert norm_rel(out[backend], out["torch"]) < 1e-6


def test_callable_schedule_and_negative_curvature_fallback():
    # f = -|x|^2 / 2 + <c, x>: H = -I, CG's first direction has negative curvature, so the
    # step is a gradient step d = g with delta = |g|
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    seen = []
    opt = NewtonCG([x], lr=0.5, schedule=lambda k, delta: (seen.append((k, delta)), 0.1)[1])
    opt.step(lambda: -0.5 * (x * x).sum() + c @ x)
    assert opt.stats["negative_curvature"] and opt.stats["cg_iterations"] == 0
    assert seen == [(0, pytest.approx(c.norm().item(), rel=1e-15))]
    assert torch.allclose(x.detach(), -0.5 * 0.1 * c, rtol=0, atol=1e-15)
    # reg > 1 makes H + reg I positive definite: a true (regularised) Newton step
    x.data.zero_()
    opt = NewtonCG([x], reg=3.0, schedule="constant")
    opt.step(lambda: -0.5 * (x * x).sum() + c @ x)
    assert not opt.stats["negative_curvature"]
    assert torch.allclose(x.detach(), -c / 2.0, rtol=0, atol=1e-14)


def test_state_dict_round_trip():
    f, w0, _ = two_tensor_problem(seed=4)
    w = torch.nn.Parameter(w0.clone())
    opt = NewtonCG([w], lr=0.5, reg=0.2, backend="torch")
    for _ in range(2):
        opt.step(lambda: f(w))
    sd = copy.deepcopy(opt.state_dict())
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = NewtonCG([w2], lr=1.0, backend="torch")
    opt2.load_state_dict(sd)
    assert opt2.stats == opt.stats
    assert (opt2.param_groups[0]["lr"], opt2.param_groups[0]["reg"]) == (0.5, 0.2)
    for _ in range(2):
        opt.step(lambda: f(w))
        opt2.step(lambda: f(w2))
    assert torch.equal(w.detach(), w2.detach()) and opt2.stats == opt.stats


def test_clear_errors():
    w = torch.nn.Parameter(torch.ones(3))
    opt = NewtonCG([w])
    with pytest.raises(TypeError, match="NewtonCG.step.. needs a closure that returns the loss"):
        opt.step()
    with pytest.raises(ValueError, match="scalar loss.*shape \\(3,\\)"):
        opt.step(lambda: w * 2)
    with pytest.raises(TypeError, match="returned|must return the loss"):
        opt.step(lambda: 3.0)

    def backward_closure():
        loss = (w ** 3).sum()
        loss.backward()
        return loss
    with pytest.raises(RuntimeError, match="already used by a backward"):
        opt.step(backward_closure)
    with pytest.raises(ValueError, match="schedule = 'armijo'"):
        NewtonCG([w], schedule="armijo")
    with pytest.raises(ValueError, match="cg_max_iter = 0"):
        NewtonCG([w], cg_max_iter=0)
    with pytest.raises(TypeError, match="unknown key.*'momentum'"):
        NewtonCG([dict(params=[w], momentum=0.9)])
    with pytest.raises(ValueError, match="reg = -1 in param group 0"):
        NewtonCG([dict(params=[w], reg=-1)])
    with pytest.raises(ValueError, match="lr = nan in the constructor"):
        NewtonCG([w], lr=float("nan"))
    frozen = torch.ones(2)
    with pytest.raises(ValueError, match=r"parameter 1 \(shape \(2,\)\) does not require grad"):
        NewtonCG([w, frozen]).step(lambda: (w ** 2).sum())
