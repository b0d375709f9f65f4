"""OASIS vs a plain-torch reference of Jahani et al. (2021), fixed learning rate:

    h_t = z * (H z);  D_1 = h_1,  D_t = b2 D_{t-1} + (1 - b2) h_t;
    p <- p - lr (g + wd p) / max(|D_t|, alpha)

with z drawn as the runtime's Hutchinson provider does (generator seeded probe_seed(0, t),
one draw over all parameters in order), 8 steps, shapes (1,), (7, 13), (3, 4, 5, 5), every
backend.
"""
import pytest
import torch

from optforge.catalogue.oasis import OASIS
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


def reference(loss, init, lr, beta2, alpha, weight_decay, num_samples, steps):
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    d = [None] * len(ps)
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
            for i, (p, g) in enumerate(zip(ps, grads)):
                d[i] = h[i] if t == 1 else beta2 * d[i] + (1 - beta2) * h[i]
                p.sub_(lr * (g + weight_decay * p) / d[i].abs().clamp(min=alpha))
    return [p.detach() for p in ps]


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
}


@pytest.mark.parametrize("kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_plain_torch_reference(kw, backend):
    init, loss = make_problem()
    got, opt = ours(loss, init, backend, 8, **kw)
    want = reference(loss, init, steps=8, **kw)
    errors = [norm_rel(a, b) for a, b in zip(got, want)]
    assert max(errors) < 2e-6, errors  # float32, different operation order


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
