"""SPIDER and STORM vs plain-torch references written from the estimators' equations, on a
stochastic problem whose batch xi_t changes every step (so g(x_{t-1}; xi_t) differs from the
gradient stored at the last step), 7 steps, shapes (1,), (7, 13), (3, 4, 5, 5), every backend.

    SPIDER: v_t = g(x_t; xi_t) on refresh steps (t - 1) mod q == 0,
            else v_t = g(x_t; xi_t) - g(x_{t-1}; xi_t) + v_{t-1};   x <- x - lr v_t
    STORM:  d_1 = g(x_1; xi_1),  d_t = g(x_t; xi_t) + (1 - a)(d_{t-1} - g(x_{t-1}; xi_t));
            x <- x - lr d_t
"""
import pytest
import torch

from optforge.catalogue.spider_storm import SPIDER, STORM
from optforge.runtime.inputs import InputError
from tests.conftest import norm_rel

SHAPES = [(1,), (7, 13), (3, 4, 5, 5)]
STEPS = 7


def make_problem():
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, generator=gen) for s in SHAPES]
    batches = [[(torch.rand(s, generator=gen) + 0.5, torch.randn(s, generator=gen))
                for s in SHAPES] for _ in range(STEPS)]

    def loss(ps, batch):
        return sum((0.5 * a * (p - b) ** 2).sum() + 0.05 * (p**4).sum()
                   for p, (a, b) in zip(ps, batch))
    return init, batches, loss


def run_ours(make, backend):
    init, batches, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = make(ps, backend)
    calls = []
    for t in range(STEPS):
        def closure():
            calls.append(t)
            opt.zero_grad()
            value = loss(ps, batches[t])
            value.backward()
            return value
        opt.step(closure)
    return [p.detach() for p in ps], len(calls)


def reference(estimator):
    init, batches, loss = make_problem()
    xs = [x.clone() for x in init]
    prev, est = None, None

    def grads(at, batch):
        at = [x.clone().requires_grad_() for x in at]
        return torch.autograd.grad(loss(at, batch), at)
    for t in range(1, STEPS + 1):
        batch = batches[t - 1]
        g = grads(xs, batch)
        g_prev = None if prev is None else grads(prev, batch)
        est = estimator(t, g, g_prev, est)
        prev = [x.clone() for x in xs]
        xs = [x - LR * e for x, e in zip(xs, est)]
    return xs


LR = 0.05


@pytest.mark.parametrize("q", [1, 3, 10])
def test_spider_matches_reference(q, backend):
    def spider(t, g, g_prev, v):
        if (t - 1) % q == 0:
            return list(g)
        return [gi - gp + vi for gi, gp, vi in zip(g, g_prev, v)]
    got, calls = run_ours(lambda ps, b: SPIDER(ps, lr=LR, refresh_period=q, backend=b),
                          backend)
    want = reference(spider)
    assert max(norm_rel(a, b) for a, b in zip(got, want)) < 1e-6
    # one evaluation a step, plus one at x_{t-1} on every step that is not a refresh
    assert calls == STEPS + sum((t - 1) % q != 0 for t in range(1, STEPS + 1))


@pytest.mark.parametrize("a", [0.1, 0.7])
def test_storm_matches_reference(a, backend):
    def storm(t, g, g_prev, d):
        if t == 1:
            return list(g)
        return [gi + (1 - a) * (di - gp) for gi, gp, di in zip(g, g_prev, d)]
    got, calls = run_ours(lambda ps, b: STORM(ps, lr=LR, a=a, backend=b), backend)
    want = reference(storm)
    assert max(norm_rel(x, y) for x, y in zip(got, want)) < 1e-6
    assert calls == 2 * STEPS - 1


def test_storm_with_a_1_is_sgd():
    """a = 1 drops the correction: d_t = g(x_t; xi_t) (the previous gradient is still read)."""
    got, _ = run_ours(lambda ps, b: STORM(ps, lr=LR, a=1.0, backend=b), "torch")
    want = reference(lambda t, g, g_prev, d: list(g))
    assert max(norm_rel(x, y) for x, y in zip(got, want)) < 1e-6


def test_gradient_at_prev_passed_as_input_equals_the_closure_run():
    init, batches, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = SPIDER(ps, lr=LR, refresh_period=3)
    for t in range(STEPS):
        supplied = None
        if t % 3:  # not a refresh: g(x_{t-1}; xi_t) by hand, at the rule's stored x_{t-1}
            at = [opt.state[p]["prev_param"].clone().requires_grad_() for p in ps]
            supplied = dict(zip(ps, torch.autograd.grad(loss(at, batches[t]), at)))
        opt.zero_grad()
        loss(ps, batches[t]).backward()
        opt.step(inputs=None if supplied is None else {"grad_at_prev": supplied})
    want, _ = run_ours(lambda ps, b: SPIDER(ps, lr=LR, refresh_period=3, backend=b), "torch")
    assert max(norm_rel(p.detach(), w) for p, w in zip(ps, want)) < 1e-7


@pytest.mark.parametrize("cls", [SPIDER, STORM])
def test_missing_closure_is_a_clear_error(cls):
    p = torch.nn.Parameter(torch.randn(5))
    opt = cls([p], lr=0.1, **({"refresh_period": 5} if cls is SPIDER else {}))
    p.grad = torch.ones(5)
    opt.step()  # the first step is a refresh: no gradient at x_0 is needed
    before = p.detach().clone()
    with pytest.raises(InputError, match=rf"{cls.__name__} \({cls.__name__}\) needs a closure: "
                                         "the gradient at the previous iterate"):
        opt.step()
    assert torch.equal(p.detach(), before) and float(opt.state[p]["step"]) == 1
