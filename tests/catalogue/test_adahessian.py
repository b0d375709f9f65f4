"""AdaHessian vs pytorch-optimizer's AdaHessian (same probes) and vs a plain-torch
reference of Yao et al. (2020) with spatial averaging, over 10 steps.

Probes: our provider draws z for step t from a generator seeded probe_seed(seed, t), one
draw over all parameters in group order; pytorch-optimizer draws from the global
generator, so torch.manual_seed(probe_seed(0, t)) before its step gives it the same z.

The reference, from the paper: h = z * (H z) with H z = d(g . z)/dp; for a 4-D kernel
h <- mean over the spatial dims of |h| (spatial averaging); m, v Adam-style moments with
v updated only on Hessian steps (t - 1) mod k == 0 (pytorch-optimizer's convention);
p <- p (1 - lr wd) - lr/(1 - b1^t) m / ((v/(1 - b2^t))^(power/2) + eps).
"""
import pytest
import torch
from pytorch_optimizer import AdaHessian as POAdaHessian

from optforge.catalogue.adahessian import AdaHessian
from optforge.runtime.inputs import InputError
from optforge.runtime.providers import probe_seed
from tests.conftest import norm_rel

SHAPES = [(1,), (7, 13), (3, 4, 5, 5)]


def make_problem(seed=0, shapes=SHAPES, coupling=0.3):
    """A smooth loss whose Hessian couples elements within and across parameters (the
    Hessian-diagonal rules' tests share it: AdaHessian, SophiaH)."""
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) for s in shapes]
    weights = [torch.randn(s, generator=gen) / s[0] for s in shapes]

    def loss(ps):
        total = sum(0.05 * (p**4).sum() + 0.5 * (p**2).sum() + (w * p).sum() ** 2
                    for p, w in zip(ps, weights))
        return total + coupling * ps[0].sum() * ps[1].mean() * ps[2].mean()
    return init, loss


def new_params(init):
    return [torch.nn.Parameter(x.clone()) for x in init]


def run_ours(make, steps=10, closure_mode=False, seed=0):
    init, loss = make_problem(seed)
    ps = new_params(init)
    opt = make(ps)
    for _ in range(steps):
        if closure_mode:
            def closure():
                opt.zero_grad()
                value = loss(ps)
                value.backward()  # no create_graph: the provider re-evaluates the closure
                return value
            opt.step(closure)
        else:
            opt.zero_grad()
            loss(ps).backward(create_graph=True)
            opt.step()
    return [p.detach() for p in ps]


def run_pytorch_optimizer(make, steps=10, seed=0):
    init, loss = make_problem(seed)
    ps = new_params(init)
    opt = make(ps)
    for t in range(1, steps + 1):
        opt.zero_grad()
        loss(ps).backward(create_graph=True)
        torch.manual_seed(probe_seed(0, t))
        opt.step()
    return [p.detach() for p in ps]


def close(ours, ref, tol):
    errors = [norm_rel(a, b) for a, b in zip(ours, ref)]
    assert max(errors) < tol, errors


CONFIGS = {
    "default": dict(lr=0.05),
    "period3-decoupled": dict(lr=0.05, update_period=3, weight_decay=0.1),
    "coupled-power-samples": dict(lr=0.05, weight_decouple=False, weight_decay=0.1,
                                  hessian_power=0.5, num_samples=2, update_period=2),
    "fixed-decay": dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.05, fixed_decay=True,
                        eps=1e-8),
}


@pytest.mark.parametrize("kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_pytorch_optimizer(kw, backend):
    ours = run_ours(lambda ps: AdaHessian(ps, backend=backend, **kw))
    ref = run_pytorch_optimizer(lambda ps: POAdaHessian(ps, **kw))
    # float32 with a different operation order; 10 steps of size ~lr
    close(ours, ref, 2e-6)


def test_matches_pytorch_optimizer_with_two_groups():
    """One probe draw over both groups (a Hessian-vector product per group would differ)."""
    def groups(ps):
        return [dict(params=ps[:2], weight_decay=0.1), dict(params=ps[2:])]
    ours = run_ours(lambda ps: AdaHessian(groups(ps), lr=0.05, update_period=2))
    ref = run_pytorch_optimizer(lambda ps: POAdaHessian(groups(ps), lr=0.05, update_period=2))
    close(ours, ref, 2e-6)


class RefAdaHessian:
    """Plain torch, from the paper's equations; computes its own Hessian-vector products."""

    def __init__(self, ps, loss, lr, betas, eps, weight_decay, hessian_power, update_period,
                 spatial):
        self.ps, self.loss = ps, loss
        self.lr, self.b1, self.b2 = lr, *betas
        self.eps, self.wd, self.k = eps, weight_decay, hessian_power
        self.period, self.spatial, self.t = update_period, spatial, 0
        self.m = [torch.zeros_like(p) for p in ps]
        self.v = [torch.zeros_like(p) for p in ps]

    def step(self):
        self.t += 1
        grads = torch.autograd.grad(self.loss(self.ps), self.ps, create_graph=True)
        if (self.t - 1) % self.period == 0:
            gen = torch.Generator().manual_seed(probe_seed(0, self.t))
            zs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in self.ps]
            dot = sum((g * z).sum() for g, z in zip(grads, zs))
            hzs = torch.autograd.grad(dot, self.ps)
            for i, (z, hz) in enumerate(zip(zs, hzs)):
                h = z * hz
                if self.spatial and h.dim() == 4:
                    h = h.abs().mean(dim=(2, 3), keepdim=True).expand_as(h)
                self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * h * h
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(self.ps, grads)):
                self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
                denom = (self.v[i] / (1 - self.b2**self.t)) ** (self.k / 2) + self.eps
                p.mul_(1 - self.lr * self.wd)
                p.sub_(self.lr / (1 - self.b1**self.t) * self.m[i] / denom)


@pytest.mark.parametrize("spatial", [True, False], ids=["spatial", "elementwise"])
def test_matches_plain_torch_reference(spatial, backend):
    kw = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, hessian_power=0.8,
              update_period=2)
    ours = run_ours(lambda ps: AdaHessian(ps, backend=backend, spatial_average=spatial, **kw))
    init, loss = make_problem()
    ps = new_params(init)
    ref = RefAdaHessian(ps, loss, spatial=spatial, **kw)
    for _ in range(10):
        ref.step()
    close(ours, [p.detach() for p in ps], 2e-6)


def test_spatial_averaging_changes_only_conv_kernels():
    ours = run_ours(lambda ps: AdaHessian(ps, lr=0.05, spatial_average=True), steps=1)
    plain = run_ours(lambda ps: AdaHessian(ps, lr=0.05), steps=1)
    assert torch.equal(ours[0], plain[0]) and torch.equal(ours[1], plain[1])
    assert not torch.allclose(ours[2], plain[2])


def test_closure_gives_the_create_graph_result():
    """A closure with a plain backward(): the provider re-evaluates it keeping the graph."""
    graph = run_ours(lambda ps: AdaHessian(ps, lr=0.05, update_period=2), steps=5)
    closure = run_ours(lambda ps: AdaHessian(ps, lr=0.05, update_period=2), steps=5,
                       closure_mode=True)
    close(closure, graph, 1e-7)


def test_no_graph_and_no_closure_is_a_clear_error():
    p = torch.nn.Parameter(torch.randn(4))
    opt = AdaHessian([p])
    (p**3).sum().backward()
    with pytest.raises(InputError, match=r"AdaHessian \(AdaHessian\) needs "
                                         r"loss.backward\(create_graph=True\) or a closure"):
        opt.step()
    assert float(opt.state[p].get("step", 0)) == 0  # nothing was applied


def test_update_period_skips_the_hessian_vector_product(monkeypatch):
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or original(*a, **k))
    run_ours(lambda ps: AdaHessian(ps, lr=0.05, update_period=3), steps=7)
    assert len(calls) == 3  # steps 1, 4, 7


def test_bad_update_period_is_refused():
    p = torch.nn.Parameter(torch.randn(3))
    opt = AdaHessian([p], update_period=1.5)
    (p**3).sum().backward(create_graph=True)
    with pytest.raises(ValueError, match="update_period = 1.5"):
        opt.step()
