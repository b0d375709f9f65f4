"""ArmijoLineSearch: never accepts a step beyond the Armijo bound
    f(x_k) <= f(x) + c <g(x), x_k - x>
(checked independently in float64), and a step whose every trial fails leaves the
parameters, the inner optimizer's state and its param groups bit for bit as they were.
"""
import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optforge
from optforge.multistep import ArmijoLineSearch

INNERS = {
    "optforge.SGD": lambda ps, lr: optforge.SGD(ps, lr=lr, momentum=0.9, backend="torch"),
    "optforge.Adam": lambda ps, lr: optforge.Adam(ps, lr=lr, backend="torch"),
    "torch.SGD": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.5),
    "torch.Adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr),
}


def bitwise_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.detach().reshape(-1).view(torch.uint8),
                                b.detach().reshape(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            bitwise_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            bitwise_equal(x, y) for x, y in zip(a, b))
    return a == b


def snapshot_inner(opt, params):
    state = [copy.deepcopy(dict(opt.state[p])) if p in opt.state else None for p in params]
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
              for g in opt.param_groups]
    return state, groups


def make_problem(seed, n, dtype, hostile):
    """A smooth nonconvex loss; ``hostile`` adds 1e3 ||x - anchor||_1, which every move from
    the anchor makes worse than the first-order decrease (|g|_inf < 1e3), so every trial
    from there must fail. Returns (x, f, set_anchor): set_anchor() pins it at x now."""
    gen = torch.Generator().manual_seed(seed)
    a = (0.1 + 3 * torch.rand(n, generator=gen, dtype=torch.float64)).to(dtype)
    centre = torch.randn(n, generator=gen, dtype=torch.float64).to(dtype)
    x = torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64).to(dtype))
    anchor = x.detach().clone()

    def f(v):
        loss = (a * (v - centre) ** 2).sum() + 0.5 * torch.sin(3 * v).sum()
        if hostile:
            loss = loss + 1e3 * (v - anchor).abs().sum()
        return loss
    return x, f, lambda: anchor.copy_(x.detach())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40),
       inner=st.sampled_from(sorted(INNERS)), log_lr=st.floats(-3, 1.5),
       c=st.floats(1e-4, 0.9), shrink=st.floats(0.1, 0.9), max_trials=st.integers(1, 8),
       hostile=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_never_accepts_beyond_the_bound_and_all_fail_changes_nothing(
        seed, n, inner, log_lr, c, shrink, max_trials, hostile, dtype):
    x, f, set_anchor = make_problem(seed, n, dtype, hostile)
    opt = INNERS[inner]([x], 10 ** log_lr)
    # one plain inner step first, so there are moments and step counters to protect
    x.grad = torch.autograd.grad(f(x), x)[0]
    opt.step()
    set_anchor()
    ls = ArmijoLineSearch(opt, c=c, shrink=shrink, max_trials=max_trials)

    def closure():
        ls.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    x0 = x.detach().clone()
    g0 = torch.autograd.grad(f(x), x)[0].double()
    f0 = float(f(x.detach()).double())
    before = snapshot_inner(opt, [x])
    lr_before = [g["lr"] for g in opt.param_groups]
    ls.step(closure)
    assert [g["lr"] for g in opt.param_groups] == lr_before
    if ls.failures:
        assert ls.counters["last_scale"] == 0.0
        assert bitwise_equal(x.detach(), x0)
        assert bitwise_equal(snapshot_inner(opt, [x]), before)
    else:
        f1 = float(f(x.detach()).double())
        bound = f0 + c * float((g0 * (x.detach().double() - x0.double())).sum())
        assert f1 <= bound
        assert any(ls.counters["last_scale"] == pytest.approx(shrink ** k, rel=1e-12)
                   for k in range(max_trials))


@pytest.mark.parametrize("inner", sorted(INNERS))
def test_hostile_loss_fails_every_trial_and_is_counted(inner):
    x, f, set_anchor = make_problem(3, 17, torch.float64, hostile=True)
    opt = INNERS[inner]([x], 0.5)
    x.grad = torch.autograd.grad(f(x), x)[0]
    opt.step()
    set_anchor()
    ls = ArmijoLineSearch(opt, max_trials=4)
    before, x0 = snapshot_inner(opt, [x]), x.detach().clone()
    for k in range(3):
        ls.step(lambda: (ls.zero_grad(), f(x).backward(), f(x))[-1])
        assert ls.failures == k + 1 and ls.counters["trials"] == 4 * (k + 1)
    assert bitwise_equal(x.detach(), x0)
    assert bitwise_equal(snapshot_inner(opt, [x]), before)


def least_squares(seed=0, m=40, n=8):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=gen, dtype=torch.float64)
    b = torch.randn(m, generator=gen, dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))
    return x, lambda v: 0.5 * ((A @ v - b) ** 2).sum(), torch.linalg.lstsq(A, b).solution


def test_wrapping_torch_sgd_converges_where_plain_sgd_diverges():
    x, f, x_star = least_squares()
    L = torch.linalg.matrix_norm(torch.autograd.functional.hessian(f, x.detach()), 2).item()
    lr = 5.0 / L                      # > 2 / L: plain gradient descent diverges
    plain = x.detach().clone().requires_grad_()
    sgd = torch.optim.SGD([plain], lr=lr)
    for _ in range(50):
        sgd.zero_grad()
        f(plain).backward()
        sgd.step()
    assert f(plain.detach()) > 1e6
    ls = ArmijoLineSearch(torch.optim.SGD([x], lr=lr), c=1e-4, shrink=0.3)
    losses = []
    # until converged: a decrease test in function values stalls where f's rounding
    # (~1e-15 f) exceeds lr |g|^2, near |g| ~ 1e-8 here; past that every trial fails
    for _ in range(300):
        losses.append(float(ls.step(lambda: (ls.zero_grad(), f(x).backward(), f(x))[-1])))
        if x.grad.norm() < 1e-6:
            break
    assert all(b <= a for a, b in zip(losses, losses[1:]))   # Armijo with a descent direction
    # ||x - x*|| <= ||g|| / lambda_min(A^T A), and lambda_min > 10 here
    assert x.grad.norm() < 1e-6 and (x.detach() - x_star).norm() < 1e-7
    assert ls.failures == 0 and ls.param_groups[0]["lr"] == lr


def test_wrapping_optforge_adam_decreases_monotonically():
    x, f, x_star = least_squares(seed=1)
    ls = ArmijoLineSearch(optforge.Adam([x], lr=1.0, backend="torch"), c=1e-4, shrink=0.3)
    losses = [float(f(x.detach()))]
    for _ in range(200):
        ls.step(lambda: (ls.zero_grad(), f(x).backward(), f(x))[-1])
        losses.append(float(f(x.detach())))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < float(f(x_star)) + 1e-3 * (losses[0] - float(f(x_star)))
    assert ls.counters["trials"] > ls.counters["steps"]   # lr=1 was too large: it backtracked


def test_state_dict_round_trip_continues_identically():
    def run(x, ls, f, steps):
        for _ in range(steps):
            ls.step(lambda: (ls.zero_grad(), f(x).backward(), f(x))[-1])

    x, f, _ = least_squares(seed=2)
    ls = ArmijoLineSearch(optforge.Adam([x], lr=2.0, backend="torch"), c=0.3, shrink=0.5)
    run(x, ls, f, 5)
    saved = copy.deepcopy(ls.state_dict())
    x2 = torch.nn.Parameter(x.detach().clone())
    ls2 = ArmijoLineSearch(optforge.Adam([x2], lr=0.1, backend="torch"))
    ls2.load_state_dict(saved)
    assert ls2.counters == ls.counters and (ls2.c, ls2.shrink) == (0.3, 0.5)
    assert ls2.param_groups[0]["lr"] == 2.0
    run(x, ls, f, 5)
    run(x2, ls2, f, 5)
    assert torch.equal(x.detach(), x2.detach())
    assert ls.counters == ls2.counters


def test_clear_errors():
    x, f, _ = least_squares()
    ls = ArmijoLineSearch(torch.optim.SGD([x], lr=0.1))
    with pytest.raises(TypeError, match="ArmijoLineSearch.step.. needs a closure"):
        ls.step()
    with pytest.raises(ValueError, match="scalar loss.*shape \\(3,\\)"):
        ls.step(lambda: torch.ones(3, requires_grad=True))
    with pytest.raises(RuntimeError, match="no parameter has a gradient"):
        ls.step(lambda: f(x.detach()))
    with pytest.raises(TypeError, match="inner must be a torch.optim.Optimizer"):
        ArmijoLineSearch([x])
    for kw, what in [(dict(c=1.5), "c = 1.5"), (dict(shrink=1.0), "shrink = 1.0"),
                     (dict(max_trials=0), "max_trials = 0")]:
        with pytest.raises(ValueError, match=what):
            ArmijoLineSearch(torch.optim.SGD([x], lr=0.1), **kw)


def test_wrapping_optforge_adam_on_every_backend_matches_torch(backend):
    out = {}
    for name in (backend, "torch"):
        x, f, _ = least_squares(seed=3)
        x = torch.nn.Parameter(x.detach().float())
        f32 = lambda v, f=f: f(v.double()).float()
        ls = ArmijoLineSearch(optforge.Adam([x], lr=3.0, backend=name), c=0.1, shrink=0.5)
        for _ in range(15):
            ls.step(lambda: (ls.zero_grad(), f32(x).backward(), f32(x))[-1])
        out[name] = (x.detach(), dict(ls.counters))
    assert out[backend][1] == out["torch"][1]        # the same trials accepted and rejected
    assert torch.allclose(out[backend][0], out["torch"][0], rtol=1e-6, atol=1e-7)
