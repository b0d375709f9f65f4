"""DOT vs a plain-torch reference of Zhao et al. (2023) (the authors' SGD-style form):

    b_task <- (momentum - delta) b_task + g + wd p,   b_kd <- (momentum + delta) b_kd + g_kd
    (first step: b = the gradient),   p <- p - lr (b_task + b_kd)

with the task gradient in p.grad and the distillation gradient passed as
step(inputs={"distill_grad": {p: g_kd}}); 10 steps, shapes (1,), (7, 13), (3, 4, 5, 5),
every backend.
"""
import pytest
import torch

from optforge.catalogue.dot import DOT
from optforge.runtime.inputs import InputError
from tests.conftest import norm_rel

SHAPES = [(1,), (7, 13), (3, 4, 5, 5)]


def gradients(steps):
    gen = torch.Generator().manual_seed(3)
    return [[(torch.randn(s, generator=gen), torch.randn(s, generator=gen)) for s in SHAPES]
            for _ in range(steps)]


def reference(init, seq, lr, momentum, delta, weight_decay):
    ps, bufs = [x.clone() for x in init], [None] * len(init)
    for grads in seq:
        for i, (g, gkd) in enumerate(grads):
            d = g + weight_decay * ps[i]
            if bufs[i] is None:
                bufs[i] = (d.clone(), gkd.clone())
            else:
                bufs[i] = ((momentum - delta) * bufs[i][0] + d,
                           (momentum + delta) * bufs[i][1] + gkd)
            ps[i] = ps[i] - lr * bufs[i][0] - lr * bufs[i][1]
    return ps


@pytest.mark.parametrize("kw", [dict(lr=0.1, momentum=0.9, delta=0.075, weight_decay=0.0),
                                dict(lr=0.03, momentum=0.8, delta=0.15, weight_decay=5e-3)],
                         ids=["default", "decay"])
def test_matches_plain_torch_reference(kw, backend):
    init = [torch.randn(s, generator=torch.Generator().manual_seed(4)) for s in SHAPES]
    seq = gradients(10)
    ps = [torch.nn.Parameter(x.clone()) for x in init]
    opt = DOT(ps, backend=backend, **kw)
    for grads in seq:
        for p, (g, _) in zip(ps, grads):
            p.grad = g.clone()
        opt.step(inputs={"distill_grad": {p: gkd for p, (_, gkd) in zip(ps, grads)}})
    want = reference(init, seq, **kw)
    assert max(norm_rel(p.detach(), w) for p, w in zip(ps, want)) < 1e-6


def test_distillation_gets_the_larger_momentum():
    """A constant distillation gradient alone builds up faster than a task gradient alone."""
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = DOT([p, q], lr=1.0)
    for _ in range(5):
        p.grad, q.grad = torch.ones(1), torch.zeros(1)
        opt.step(inputs={"distill_grad": {p: torch.zeros(1), q: torch.ones(1)}})
    assert q.item() < p.item() < 0  # q moved further: momentum 0.975 vs 0.825


def test_missing_distill_grad_is_a_clear_error():
    p = torch.nn.Parameter(torch.randn(3))
    opt = DOT([p])
    p.grad = torch.ones(3)
    with pytest.raises(InputError, match=r"given\('distill_grad'\).*inputs="):
        opt.step()
    other = torch.nn.Parameter(torch.randn(2))
    opt.add_param_group(dict(params=[other]))
    other.grad = torch.ones(2)
    with pytest.raises(InputError, match=r"inputs\['distill_grad'\] has no tensor for "
                                         r"parameter 0 of group 0 \(shape \(3,\)\)"):
        opt.step(inputs={"distill_grad": {other: torch.ones(2)}})
    with pytest.raises(InputError, match=r"input 'distill_grad' has shape \(2,\), the "
                                         r"parameter \(3,\)"):
        opt.step(inputs={"distill_grad": {p: torch.ones(2), other: torch.ones(2)}})
    assert float(opt.state[p].get("step", 0)) == 0
    # group 0 complete, group 1 missing: inputs are gathered for every group before any
    # kernel runs, so group 0 is not stepped either
    before = p.detach().clone()
    with pytest.raises(InputError, match=r"no tensor for parameter 0 of group 1"):
        opt.step(inputs={"distill_grad": {p: torch.ones(3)}})
    assert torch.equal(p.detach(), before) and not opt.state[p]
