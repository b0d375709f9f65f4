"""OASIS vs a plain-torch reference of Jahani et al. (2021), Algorithm 1:

    h_t = z * (H z);  D_1 = h_1,  D_t = b2 D_{t-1} + (1 - b2) h_t;  Dh_t = max(|D_t|, alpha)
    gh_t = g_t + wd w_t
    eta_1 = lr, theta_1 = inf;  t >= 2: eta_t = min(sqrt(1 + theta_{t-1}) eta_{t-1},
        sqrt(sum dw^2 Dh_t) / (2 sqrt(sum dg^2 / Dh_t))),  theta_t = eta_t / eta_{t-1}
        (dw = w_t - w_{t-1}, dg = gh_t - gh_{t-1}, sums over every parameter)
    w <- w - eta_t gh_t / Dh_t
    (adaptive_lr=False: eta_t = lr)

with z drawn as the runtime's Hutchinson provider does (generator seeded probe_seed(0, t),
one draw over all parameters in order), 8 steps, shapes (1,), (7, 13), (3, 4, 5, 5), every
backend.
"""
import copy
import math

import pytest
import torch

from optforge.catalogue.oasis import OASIS, next_eta
from optforge.runtime.inputs import InputError
from optforge.runtime.providers import probe_seed
from tests.conftest import norm_rel

SHAPES = [(1,), (7, 13), (3, 4, 5, 5)]


def make_problem():
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(s, generator=gen) for s in SHAPES]
    weights = [torch.randn(s, generator=gen) for s in SHAPES]

    def loss(ps):
        # curvature of both signs and sizes: |D| crosses alpha for some elements
        total = sum((w * p**2).sum() + 0.1 * (p**4).sum() + 0.2 * p.sum() ** 2
                    for p, w in zip(ps, weights))
        return total + 0.1 * ps[0].sum() * ps[2].mean()
    return init, loss


def reference(loss, init, lr, beta2, alpha, weight_decay, num_samples, steps, adaptive_lr=True,
              scales=None):
    """``scales[t-1]``: a scheduler's lr_t / lr at step t (the step is eta_t * scale)."""
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    d = [None] * len(ps)
    eta, theta, prev_w, prev_g, etas = lr, math.inf, None, None, []
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss(ps), ps, create_graph=True)
        gen = torch.Generator().manual_seed(probe_seed(0, t))
        h = [torch.zeros_like(p) for p in ps]
        for _ in range(num_samples):
            zs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in ps]
            hzs = torch.autograd.grad(sum((g * z).sum() for g, z in zip(grads, zs)), ps,
                                      retain_graph=True)
            h = [hi + z * hz / num_samples for hi, z, hz in zip(h, zs, hzs)]
        with torch.no_grad():
            d = [h[i] if t == 1 else beta2 * d[i] + (1 - beta2) * h[i] for i in range(len(ps))]
            d_hat = [di.abs().clamp(min=alpha).double() for di in d]
            g_hat = [(g + weight_decay * p).double() for g, p in zip(grads, ps)]
            w = [p.double() for p in ps]
            if adaptive_lr and t >= 2:
                step_sq = sum(((a - b) ** 2 * dh).sum() for a, b, dh in zip(w, prev_w, d_hat))
                grad_sq = sum(((a - b) ** 2 / dh).sum() for a, b, dh in zip(g_hat, prev_g, d_hat))
                # no curvature information (a zero step or equal gradients): the
                # quotient is dropped, and an infinite growth keeps eta (oasis.py's rule)
                bound = step_sq.sqrt().item() / (2 * grad_sq.sqrt().item()) \
                    if step_sq > 0 and grad_sq > 0 else math.inf
                new_eta = min(math.sqrt(1 + theta) * eta, bound)
                new_eta = eta if math.isinf(new_eta) else new_eta
                eta, theta = new_eta, new_eta / eta
            prev_w, prev_g = w, g_hat
            etas.append(eta)
            scale = scales[t - 1] if scales else 1.0
            for p, gh, dh in zip(ps, g_hat, d_hat):
                p.sub_((eta * scale * gh / dh).float())
    return [p.detach() for p in ps], etas


def ours(loss, init, backend, steps, **kw):
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = OASIS(ps, backend=backend, **kw)
    for _ in range(steps):
        opt.zero_grad()
        loss(ps).backward(create_graph=True)
        opt.step()
    return [p.detach() for p in ps], opt


CONFIGS = {
    "default": dict(lr=1e-2, beta2=0.99, alpha=1e-5, weight_decay=0.0, num_samples=1),
    "truncating": dict(lr=0.05, beta2=0.9, alpha=0.5, weight_decay=0.01, num_samples=2),
    "fixed-lr": dict(lr=1e-2, beta2=0.99, alpha=1e-5, weight_decay=0.0, num_samples=1,
                     adaptive_lr=False),
    "fixed-lr-truncating": dict(lr=0.05, beta2=0.9, alpha=0.5, weight_decay=0.01,
                                num_samples=2, adaptive_lr=False),
}


@pytest.mark.parametrize("kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_plain_torch_reference(kw, backend):
    init, loss = make_problem()
    got, opt = ours(loss, init, backend, 8, **kw)
    want, etas = reference(loss, init, steps=8, **kw)
    errors = [norm_rel(a, b) for a, b in zip(got, want)]
    assert max(errors) < 2e-6, errors  # float32, different operation order
    if kw.get("adaptive_lr", True):
        assert len(set(etas)) > 2  # the step size really adapts on this problem
        assert opt.param_groups[0]["eta"] == pytest.approx(etas[-1], rel=1e-5)
    else:
        assert "eta" not in opt.param_groups[0]


def test_next_eta_without_curvature_information():
    """Equal gradients (no curvature along the step) or a zero step: the quotient term is
    dropped and eta grows by sqrt(1 + theta); on the first adaptive step (theta = inf) it
    stays put instead of becoming infinite."""
    assert next_eta(0.1, 3.0, 4.0, 0.0) == pytest.approx(0.2)
    assert next_eta(0.1, 3.0, 0.0, 4.0) == pytest.approx(0.2)
    assert next_eta(0.1, math.inf, 4.0, 0.0) == 0.1
    assert next_eta(0.1, math.inf, 4.0, 1.0) == pytest.approx(1.0)  # sqrt(4) / (2 sqrt(1))
    assert next_eta(0.1, 0.0, 4.0, 1.0) == pytest.approx(0.1)  # sqrt(1 + 0) * 0.1 < 1


def test_adaptive_step_size_survives_a_checkpoint():
    """eta and theta live in the param group: a resumed optimizer continues bit for bit."""
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = OASIS(ps, lr=0.05, alpha=0.5)

    def run(opt, ps, steps):
        for _ in range(steps):
            opt.zero_grad()
            loss(ps).backward(create_graph=True)
            opt.step()
    run(opt, ps, 4)
    saved = copy.deepcopy(opt.state_dict())
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = OASIS(ps2, lr=0.05, alpha=0.5)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["eta"] == opt.param_groups[0]["eta"]
    run(opt, ps, 3)
    run(opt2, ps2, 3)
    assert all(torch.equal(a, b) for a, b in zip(ps, ps2))


def test_a_scheduler_scales_the_automatic_step():
    """A warm-up from lr = 0 and a decay: the step taken is eta_t * lr_t / lr_1, eta_t the
    paper's recurrence over the steps actually taken."""
    factors = [0.0, 0.5, 1.0, 1.0, 0.3, 0.3, 0.1, 0.1]
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = OASIS(ps, **CONFIGS["truncating"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (factors + [0.1])[k])
    for _ in factors:
        opt.zero_grad()
        loss(ps).backward(create_graph=True)
        opt.step()
        sched.step()
    want, _ = reference(loss, init, steps=len(factors), scales=factors, **CONFIGS["truncating"])
    assert max(norm_rel(p.detach(), w) for p, w in zip(ps, want)) < 2e-6


def test_turning_adaptive_lr_off_and_on_restarts_it():
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = OASIS(ps, lr=0.05, alpha=0.5)

    def run(steps):
        for _ in range(steps):
            opt.zero_grad()
            loss(ps).backward(create_graph=True)
            opt.step()
    run(3)
    opt.param_groups[0]["adaptive_lr"] = False
    run(2)
    assert "eta" not in opt.param_groups[0]
    opt.param_groups[0]["adaptive_lr"] = True
    run(1)  # the first adaptive step again: eta = lr, no stale previous iterate used
    assert opt.param_groups[0]["eta"] == 0.05 and opt.param_groups[0]["theta"] == math.inf


def test_zero_first_step_size_is_refused():
    ps = [torch.nn.Parameter(torch.ones(3))]
    opt = OASIS(ps, lr=0.0)
    (ps[0] ** 2).sum().backward(create_graph=True)
    with pytest.raises(ValueError, match=r"lr = 0.0 in param group 0; with adaptive_lr=True"):
        opt.step()
    assert torch.equal(ps[0].detach(), torch.ones(3)) and not opt.state[ps[0]]


def test_truncation_is_exercised():
    """The 'truncating' config really clamps: some |D| < alpha (else it tests nothing new)."""
    init, loss = make_problem()
    _, opt = ours(loss, init, "torch", 8, **CONFIGS["truncating"])
    d = torch.cat([opt.state[p]["hessian_diag"].flatten() for p in opt.state])
    assert (d.abs() < 0.5).any() and (d.abs() >= 0.5).any()


def test_closure_without_graph_works_and_missing_graph_is_an_error():
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = OASIS(ps)

    def closure():
        opt.zero_grad()
        value = loss(ps)
        value.backward()
        return value
    for _ in range(3):
        opt.step(closure)
    want, _ = ours(loss, init, "torch", 3)
    assert max(norm_rel(p.detach(), w) for p, w in zip(ps, want)) < 1e-7
    closure()
    with pytest.raises(InputError, match=r"OASIS \(OASIS\) needs "
                                         r"loss.backward\(create_graph=True\) or a closure"):
        opt.step()
