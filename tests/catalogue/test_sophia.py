"""SophiaH vs pytorch-optimizer's SophiaH (same probes) and vs a plain-torch reference of
Liu et al. (2023)'s Algorithm 3 written from the paper, over 20 steps on every backend.

Probes: our provider draws u for step t from a generator seeded probe_seed(seed, t), one
draw over all parameters in group order; pytorch-optimizer draws from the global
generator, so torch.manual_seed(probe_seed(0, t)) before its step gives it the same u
(Gaussian by default, Rademacher with rademacher=True / hessian_distribution).

The configurations keep most preconditioned entries inside the clip (checked), so the
comparison sees the Hessian EMA and not only the sign of the momentum.
"""
import pytest
import torch
from pytorch_optimizer import SophiaH as POSophiaH

from optforge.catalogue.sophia import SophiaH
from optforge.runtime.inputs import InputError
from optforge.runtime.providers import probe_seed
from tests.catalogue.test_adahessian import make_problem as hessian_problem
from tests.conftest import norm_rel

SHAPES = [(1,), (7, 13), (3, 4, 5)]
STEPS = 20
TOL = 1e-6


def make_problem(seed=0):
    """AdaHessian's test problem on SophiaH's shapes, coupled less (so max(h, eps) is
    mostly h: a positive, coupled Hessian)."""
    return hessian_problem(seed, shapes=SHAPES, coupling=0.1)


def run(make, steps=STEPS, seed_global=False, closure_mode=False):
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = make(ps)
    for t in range(1, steps + 1):
        if closure_mode:
            def closure():
                opt.zero_grad()
                value = loss(ps)
                value.backward()  # no graph: the provider re-evaluates the closure
                return value
            opt.step(closure)
            continue
        opt.zero_grad()
        loss(ps).backward(create_graph=True)
        if seed_global:
            torch.manual_seed(probe_seed(0, t))
        opt.step()
    return ps, opt


CONFIGS = {
    "defaults-unsaturated": dict(lr=0.01, clip=10.0, betas=(0.9, 0.6)),
    "period3-decoupled": dict(lr=0.01, clip=5.0, betas=(0.9, 0.5), update_period=3,
                              weight_decay=0.1),
    "fixed-decay": dict(lr=0.02, clip=10.0, weight_decay=0.05, fixed_decay=True,
                        betas=(0.8, 0.7)),
    "coupled-rademacher": dict(lr=0.01, clip=10.0, betas=(0.9, 0.6), weight_decouple=False,
                               weight_decay=0.1, rademacher=True, num_samples=2,
                               update_period=2),
    "maximize": dict(lr=1e-3, clip=10.0, betas=(0.9, 0.6), maximize=True, update_period=4),
    "pytorch-optimizer-defaults": dict(),  # lr 0.06, clip 0.01: nearly every entry clipped
}


def pytorch_optimizer_kw(kw):
    out = {("p" if k == "clip" else k): v for k, v in kw.items() if k != "rademacher"}
    out["hessian_distribution"] = "rademacher" if kw.get("rademacher") else "gaussian"
    return out


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_pytorch_optimizer(config, backend):
    kw = CONFIGS[config]
    ours, opt = run(lambda ps: SophiaH(ps, backend=backend, **kw))
    ref, _ = run(lambda ps: POSophiaH(ps, **pytorch_optimizer_kw(kw)), seed_global=True)
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach(), b.detach()) < TOL
    # most entries are not clipped: the Hessian EMA shaped the step
    ratios = torch.cat([(opt.state[p]["momentum"] / opt.state[p]["hessian_moment"]
                         .clamp(min=1e-12)).abs().flatten() for p in ours])
    unclipped = (ratios < kw.get("clip", 1e-2)).float().mean()
    assert unclipped > 0.5 or config == "pytorch-optimizer-defaults"


def paper_reference(gamma, eps, eta, lam, betas, k, steps=STEPS):
    """Algorithm 3 of Liu et al. (2023) with Hutchinson's estimator, in plain torch:
    h refreshed every k steps from u ⊙ ∇(∇L · u), u ~ N(0, I) seeded as our provider."""
    init, loss = make_problem()
    ps = [x.clone().requires_grad_() for x in init]
    m = [torch.zeros_like(x) for x in init]
    h = [torch.zeros_like(x) for x in init]
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss(ps), ps, create_graph=True)
        if (t - 1) % k == 0:
            gen = torch.Generator().manual_seed(probe_seed(0, t))
            us = [torch.randn(x.shape, generator=gen) for x in ps]
            hus = torch.autograd.grad(grads, ps, grad_outputs=us)
            h = [betas[1] * hi + (1 - betas[1]) * u * hu for hi, u, hu in zip(h, us, hus)]
        with torch.no_grad():
            m = [betas[0] * mi + (1 - betas[0]) * g for mi, g in zip(m, grads)]
            for p, mi, hi in zip(ps, m, h):
                p.sub_(eta * lam * p)
                p.sub_(eta * torch.clamp(mi / torch.clamp(gamma * hi, min=eps), -1, 1))
    return [p.detach() for p in ps]


def test_matches_the_paper_in_closure_mode(backend):
    """The paper's (η, γ, ε, λ) from ours: γ = clip, ε = clip·eps, η = lr·clip,
    λ = wd/clip; gradients without a graph, the closure re-evaluated for H u."""
    lr, clip, eps, wd, betas, k = 0.01, 0.5, 1e-12, 0.1, (0.96, 0.99), 3
    ours, _ = run(lambda ps: SophiaH(ps, backend=backend, lr=lr, clip=clip, eps=eps,
                                     weight_decay=wd, betas=betas, update_period=k),
                  closure_mode=True)
    ref = paper_reference(gamma=clip, eps=clip * eps, eta=lr * clip, lam=wd / clip,
                          betas=betas, k=k)
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach(), b) < TOL


def test_hessian_steps_only_need_the_graph():
    """Between Hessian steps no Hessian-vector product is computed (a plain backward
    will do); on a Hessian step a gradient without a graph and no closure is an error
    that leaves everything as it was."""
    init, loss = make_problem()
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = SophiaH(ps, lr=0.01, update_period=3)
    for t in range(1, 4):
        opt.zero_grad()
        loss(ps).backward(create_graph=t == 1)
        opt.step()
    opt.zero_grad()
    loss(ps).backward()
    before = [p.detach().clone() for p in ps]
    with pytest.raises(InputError, match="create_graph=True"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(ps, before))
    assert float(opt.state[ps[0]]["step"]) == 3
