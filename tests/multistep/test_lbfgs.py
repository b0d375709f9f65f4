"""LBFGS against torch.optim.LBFGS: same iterates, evaluation counts and state over several
outer steps (with and without strong-Wolfe line search), and checkpoints that load and
continue in both directions.

Tolerances: in float64 the two implementations do the same arithmetic in the same order
(flat dot products, axpys, the same line-search trial points), so iterates agree to
1e-12 relative (observed: bit for bit). In float32 optforge decides scalar quantities (step
sizes, Wolfe tests, cubic minimisers) in float64 where torch keeps them as float32
tensors; those rounding differences (~1e-7 relative per scalar) are carried through 20
L-BFGS iterations of a nonconvex MLP (observed 4e-7 fixed lr, 4e-6 strong Wolfe), hence
the float32 check is 1e-4 relative.
"""
import copy

import pytest
import torch

import optforge
from optforge.multistep import LBFGS


def rosenbrock(dtype):
    x = torch.nn.Parameter(torch.tensor([-1.5, 2.0, 0.5, -0.3, 1.2], dtype=dtype))
    return [x], lambda: ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


def logistic(dtype):
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(120, 10, generator=gen, dtype=torch.float64).to(dtype)
    labels = torch.where(torch.rand(120, generator=gen) < 0.5, -1.0, 1.0).to(dtype)
    w = torch.nn.Parameter(torch.zeros(10, dtype=dtype))
    b = torch.nn.Parameter(torch.zeros((), dtype=dtype))
    unused = torch.nn.Parameter(torch.ones(3, dtype=dtype))   # never gets a gradient
    return [w, unused, b], lambda: (torch.nn.functional.softplus(-labels * (A @ w + b)).mean()
                            + 1e-3 * (w * w).sum())


def mlp(dtype):
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(64, 3, generator=gen, dtype=torch.float64).to(dtype)
    Y = torch.sin(X.sum(1, keepdim=True))
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    net.to(dtype)
    return list(net.parameters()), lambda: ((net(X) - Y) ** 2).mean()


PROBLEMS = {"rosenbrock": rosenbrock, "logistic": logistic, "mlp": mlp}
SETTINGS = [dict(lr=0.1, max_iter=10, history_size=5),             # no line search: small lr
            dict(lr=1, max_iter=8, history_size=4, line_search_fn="strong_wolfe")]


def make(cls, problem, dtype, **kw):
    params, f = PROBLEMS[problem](dtype)
    opt = cls(params, **kw)

    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss
    return params, opt, closure


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params]).double()


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_same_state(ours, ref):
    a, b = ours.state[ours.param_groups[0]["params"][0]], ref.state[ref.param_groups[0]["params"][0]]
    assert (a["func_evals"], a["n_iter"], len(a["old_dirs"])) == \
        (b["func_evals"], b["n_iter"], len(b["old_dirs"]))
    for key in ("d", "prev_flat_grad"):
        assert rel(a[key].double(), b[key].double()) <= 1e-12, key


@pytest.mark.parametrize("setting", SETTINGS, ids=["fixed_lr", "strong_wolfe"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_matches_torch_over_several_steps(problem, setting):
    p1, ours, c1 = make(LBFGS, problem, torch.float64, **setting)
    p2, ref, c2 = make(torch.optim.LBFGS, problem, torch.float64, **setting)
    start = float(c2().detach())
    for k in range(5):
        l1, l2 = ours.step(c1), ref.step(c2)
        assert float(l1.detach()) == pytest.approx(float(l2.detach()), rel=1e-12, abs=1e-15)
        assert rel(flat(p1), flat(p2)) <= 1e-12, k
    assert_same_state(ours, ref)
    assert float(c2().detach()) < start        # the comparison is over a run that did something


@pytest.mark.parametrize("setting", SETTINGS, ids=["fixed_lr", "strong_wolfe"])
def test_matches_torch_in_float32(setting):
    p1, ours, c1 = make(LBFGS, "mlp", torch.float32, **setting)
    p2, ref, c2 = make(torch.optim.LBFGS, "mlp", torch.float32, **setting)
    for _ in range(3):
        ours.step(c1), ref.step(c2)
    assert rel(flat(p1), flat(p2)) <= 1e-4
    assert float(c1().detach()) == pytest.approx(float(c2().detach()), rel=1e-4)


def test_strong_wolfe_converges_on_rosenbrock():
    # the classic 2-d start (-1.2, 1): one minimum, at (1, 1), behind a curved valley
    x = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    opt = LBFGS([x], lr=1, max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-15,
                line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        loss.backward()
        return loss
    opt.step(closure)
    assert (x.detach() - 1).abs().max() < 1e-8
    assert opt.state[x]["func_evals"] < 100   # the line search, not brute force


@pytest.mark.parametrize("direction", ["torch->optforge", "optforge->torch"])
@pytest.mark.parametrize("setting", SETTINGS, ids=["fixed_lr", "strong_wolfe"])
def test_checkpoints_load_and_continue(direction, setting):
    first, then = (torch.optim.LBFGS, LBFGS) if direction == "torch->optforge" else \
        (LBFGS, torch.optim.LBFGS)
    p1, before, c1 = make(first, "logistic", torch.float64, **setting)
    for _ in range(2):
        before.step(c1)
    saved = copy.deepcopy(before.state_dict())
    p2, after, c2 = make(then, "logistic", torch.float64, **setting)
    with torch.no_grad():
        for a, b in zip(p2, p1):
            a.copy_(b)
    after.load_state_dict(saved)
    for _ in range(3):
        before.step(c1), after.step(c2)
    assert rel(flat(p2), flat(p1)) <= 1e-12
    assert_same_state(after, before) if then is LBFGS else assert_same_state(before, after)


def test_optforge_name_and_errors():
    assert optforge.LBFGS is LBFGS
    params, opt, _ = make(LBFGS, "rosenbrock", torch.float64)
    with pytest.raises(TypeError, match="LBFGS.step.. needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="line_search_fn = 'wolfe'"):
        LBFGS(params, line_search_fn="wolfe")
    with pytest.raises(ValueError, match="history_size = 0"):
        LBFGS(params, history_size=0)
    with pytest.raises(ValueError, match="one param group"):
        LBFGS([dict(params=params[:1]), dict(params=[torch.nn.Parameter(torch.ones(2))])])


@pytest.mark.parametrize("setting", SETTINGS, ids=["fixed_lr", "strong_wolfe"])
def test_a_failing_closure_leaves_params_and_state_untouched(setting):
    params, opt, closure = make(LBFGS, "rosenbrock", torch.float64, **setting)
    opt.step(closure)
    x0, state0 = flat(params), copy.deepcopy(opt.state[params[0]])
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 3:               # inside the iterations / the line search
            raise FloatingPointError("boom")
        return closure()
    with pytest.raises(FloatingPointError):
        opt.step(failing)
    assert torch.equal(flat(params), x0)
    state = opt.state[params[0]]
    assert state.keys() == state0.keys() and state["n_iter"] == state0["n_iter"]
    assert torch.equal(state["d"], state0["d"]) and len(state["ro"]) == len(state0["ro"])
