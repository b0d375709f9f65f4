"""The built-in input providers: Hutchinson's z * (H z) and the gradient at the previous
iterate, checked against closed forms and plain autograd, plus their contracts (one
evaluation per step for all groups, exact restoration, clear errors)."""
import pytest
import torch

import optforge
from optforge.dsl import Rule, given, grad, param, state
from optforge.runtime import providers
from optforge.runtime.inputs import InputError
from optforge.runtime.providers import PREV_PARAM, probe_seed, spatial_average


def newton(lr=1.0, num_samples=1):
    """A diagonal Newton step on Hutchinson's estimate (exact for separable quadratics)."""
    return Rule(param() - lr * grad() / given("hutchinson"))


def test_separable_quadratic_gives_the_exact_diagonal_and_one_newton_step():
    a = torch.tensor([0.5, 2.0, 3.0, 7.0]).reshape(2, 2)
    b = torch.tensor([[1.0, -2.0], [0.25, 4.0]])
    x = torch.nn.Parameter(torch.zeros(2, 2))
    opt = optforge.Optimizer([x], newton)
    (0.5 * a * (x - b) ** 2).sum().backward(create_graph=True)
    h = providers.hutchinson(opt, opt.param_groups[0], [x], None)[0]
    assert torch.equal(h, a)  # z_i^2 = 1 and H is diagonal
    opt.zero_grad()  # the provider used (and freed) that graph: a new one for the step
    (0.5 * a * (x - b) ** 2).sum().backward(create_graph=True)
    opt.step()
    assert torch.allclose(x.detach(), b, rtol=0, atol=1e-6)


def _quadratic(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen)
    return m @ m.T + torch.eye(n)


def test_probe_estimate_is_z_times_hz_with_the_documented_probe():
    A = _quadratic()
    x = torch.nn.Parameter(torch.randn(6))
    opt = optforge.Optimizer([x], newton, seed=7)
    (0.5 * x @ A @ x).backward(create_graph=True)
    h = providers.hutchinson(opt, opt.param_groups[0], [x], None)[0]
    gen = torch.Generator().manual_seed(probe_seed(7, 1))
    z = torch.randint(0, 2, (6,), generator=gen).float() * 2 - 1
    assert torch.allclose(h, z * (A @ z), rtol=1e-6, atol=1e-6)


def gaussian_newton(lr=1.0, num_samples=1):
    """As ``newton``, from Gaussian probes (SophiaH's)."""
    return Rule(param() - lr * grad() / given("hutchinson_gaussian"))


def test_gaussian_probe_estimate_is_z_times_hz_with_a_normal_probe():
    A = _quadratic()
    x = torch.nn.Parameter(torch.randn(6))
    opt = optforge.Optimizer([x], gaussian_newton, seed=7)
    (0.5 * x @ A @ x).backward(create_graph=True)
    h = providers.hutchinson_gaussian(opt, opt.param_groups[0], [x], None)[0]
    gen = torch.Generator().manual_seed(probe_seed(7, 1))
    z = torch.randn(6, generator=gen)
    assert torch.allclose(h, z * (A @ z), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(z.abs(), torch.ones(6))  # not a Rademacher probe


def test_many_gaussian_probes_average_to_the_diagonal():
    A = _quadratic()
    x = torch.nn.Parameter(torch.randn(6))
    opt = optforge.Optimizer([x], gaussian_newton, num_samples=4000)
    (0.5 * x @ A @ x).backward(create_graph=True)
    h = providers.hutchinson_gaussian(opt, opt.param_groups[0], [x], None)[0]
    # one sample z_i (A z)_i has variance 2 A_ii^2 + sum_{j != i} A_ij^2
    std = (2 * A.diag() ** 2 + (A - torch.diag(A.diag())).pow(2).sum(1)).sqrt()
    assert ((h - A.diag()).abs() < 5 * std / 4000**0.5).all()


def test_many_probes_average_to_the_diagonal():
    A = _quadratic()
    x = torch.nn.Parameter(torch.randn(6))
    opt = optforge.Optimizer([x], newton, num_samples=4000)
    (0.5 * x @ A @ x).backward(create_graph=True)
    h = providers.hutchinson(opt, opt.param_groups[0], [x], None)[0]
    off = (A - torch.diag(A.diag())).pow(2).sum(1).sqrt()  # std of one sample, per element
    assert ((h - A.diag()).abs() < 5 * off / 4000**0.5).all()


def test_one_hessian_vector_product_per_step_for_all_groups(monkeypatch):
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    ps = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
    opt = optforge.Optimizer([dict(params=ps[:1]), dict(params=ps[1:], lr=0.5)], newton)
    for step in range(1, 4):
        opt.zero_grad()
        sum((p**4).sum() + p.sum() ** 2 for p in ps).backward(create_graph=True)
        opt.step()
        assert len(calls) == step


def test_other_seeds_draw_other_probes():
    A = _quadratic()

    def estimate(seed):
        x = torch.nn.Parameter(torch.ones(6))
        opt = optforge.Optimizer([x], newton, seed=seed)
        (0.5 * x @ A @ x).backward(create_graph=True)
        return providers.hutchinson(opt, opt.param_groups[0], [x], None)[0]
    assert torch.equal(estimate(3), estimate(3))
    assert not torch.equal(estimate(3), estimate(4))


def test_spatial_average_is_over_the_kernel_dims_of_4d_tensors_only():
    h = torch.randn(3, 2, 5, 5)
    s = spatial_average(h)
    assert s.shape == h.shape
    assert torch.equal(s[1, 0], h[1, 0].abs().mean().expand(5, 5))
    v = torch.randn(4, 3, 2)
    assert spatial_average(v) is v


def test_closure_reevaluation_restores_backward_even_when_the_closure_fails():
    x = torch.nn.Parameter(torch.randn(3))
    opt = optforge.Optimizer([x], newton)
    original = torch.autograd.backward

    def closure():
        opt.zero_grad()
        (x**4).sum().backward()
        if torch.autograd.backward is not original:  # the provider's re-evaluation
            raise KeyError("boom")
        return 0.0
    with pytest.raises(KeyError, match="boom"):
        opt.step(closure)
    assert torch.autograd.backward is original


def test_closure_without_backward_is_a_clear_error():
    x = torch.nn.Parameter(torch.randn(3))
    opt = optforge.Optimizer([x], newton)
    x.grad = torch.ones(3)
    with pytest.raises(InputError, match="re-evaluating the closure left gradients without "
                                         "a graph"):
        opt.step(lambda: (x**2).sum())


# ---- gradient at the previous iterate -----------------------------------------------------

def corrected(lr=0.1):
    """g(x_t) - g(x_{t-1}) on the same batch, then remember x_t."""
    p = param()
    state(PREV_PARAM, init=p)
    return Rule(p - lr * (grad() - given("grad_at_prev")), **{PREV_PARAM: p})


def test_grad_at_prev_is_the_gradient_at_the_stored_iterate_and_everything_is_restored():
    w = torch.nn.Parameter(torch.randn(4, 3))
    c = torch.nn.Parameter(torch.randn(3))
    opt = optforge.Optimizer([dict(params=[w]), dict(params=[c], lr=0.3)], corrected)
    batch = {"x": torch.randn(5, 4)}
    seen = []

    def closure():
        seen.append((w.detach().clone(), c.detach().clone()))
        opt.zero_grad(set_to_none=False)  # an in-place zeroing must not clobber g(x_t)
        loss = ((batch["x"] @ w).tanh() @ c).pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)  # step 1: prev_param = x_1 (= its init), correction 0
    x2 = (w.detach().clone(), c.detach().clone())
    batch["x"] = torch.randn(5, 4)
    closure()  # the step's own evaluation at x_2, as Optimizer.step does first
    grads = {p: p.grad for p in (w, c)}
    grad_values = {p: p.grad.clone() for p in (w, c)}
    prev = [opt.state[p][PREV_PARAM].clone() for p in (w, c)]
    values = providers.grad_at_prev(opt, opt.param_groups[1], [c], closure)
    assert torch.equal(w.detach(), x2[0]) and torch.equal(c.detach(), x2[1])  # bit for bit
    for p in (w, c):  # the very gradient tensors, with their values
        assert p.grad is grads[p] and torch.equal(p.grad, grad_values[p])
    # the closure ran with every parameter at the previous iterate, both groups at once
    assert torch.equal(seen[-1][0], prev[0]) and torch.equal(seen[-1][1], prev[1])
    at = [t.clone().requires_grad_() for t in prev]
    want = torch.autograd.grad(((batch["x"] @ at[0]).tanh() @ at[1]).pow(2).sum(), at)
    assert torch.allclose(values[0], want[1], rtol=1e-6, atol=1e-7)
    # group 0 asks next in the same step: served from the cache, no new evaluation
    n = len(seen)
    assert torch.allclose(providers.grad_at_prev(opt, opt.param_groups[0], [w], closure)[0],
                          want[0], rtol=1e-6, atol=1e-7)
    assert len(seen) == n


def test_grad_at_prev_without_closure_is_a_clear_error():
    x = torch.nn.Parameter(torch.randn(3))
    opt = optforge.Optimizer([x], corrected)
    x.grad = torch.ones(3)
    with pytest.raises(InputError, match=r"Optimizer \(corrected\) needs a closure"):
        opt.step()
