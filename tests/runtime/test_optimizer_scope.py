"""``over="optimizer"``: reductions that span every param group (runtime/reduce_stage.py).

torch.nn.utils.clip_grad_norm_ over a model's parameters takes one norm over all of them,
whatever param groups the optimizer splits them into. With the usual decay / no-decay
split, a per-group norm (``over="group"``, ClippedSGD before) was 7e-2 off after 3 steps.
Reference: clip_grad_norm_ over every parameter, then torch.optim.SGD with the same groups.
"""
import pytest
import torch

import optforge
from optforge.dsl import Rule, grad, minimum, norm, numel, param, total
from optforge.dsl.reductions import SCOPES
from tests.conftest import norm_rel

SHAPES = [(7, 13), (13,), (257, 129), (129,), (1023,)]


def _params(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


def _groups(params, **extra):
    """Decay (matrices) / no-decay (vectors), and a third group with its own lr."""
    return [{"params": [params[0], params[2]], "weight_decay": 0.1, **extra},
            {"params": [params[1], params[3]], "weight_decay": 0.0, **extra},
            {"params": [params[4]], "weight_decay": 0.0, "lr": 0.05, **extra}]


def _run(make_opt, steps=3, max_norm=0.5):
    ours, ref = _params(), _params()
    opt = make_opt(_groups(ours))
    ref_opt = torch.optim.SGD(_groups(ref), lr=0.1, momentum=0.9, foreach=False)
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        for p, q in zip(ours, ref):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref, max_norm, foreach=False)
        ref_opt.step()
    return max(norm_rel(p.detach(), q.detach()) for p, q in zip(ours, ref))


def test_clipped_sgd_equals_clip_grad_norm_over_every_group(backend):
    assert _run(lambda groups: optforge.ClippedSGD(groups, lr=0.1, momentum=0.9, max_norm=0.5,
                                                    backend=backend)) < 1e-6


def _clipped(over):
    def clipped_sgd_momentum(lr=0.1, max_norm=0.5, weight_decay=0.0):
        g = grad() * minimum(1, max_norm / (norm(grad(), over=over) + 1e-6))
        return Rule(param() - lr * (g + weight_decay * param()))
    return clipped_sgd_momentum


def test_a_group_scope_stays_per_group(backend):
    """The same rule with ``over="group"`` clips each group on its own (clip_grad_norm_
    per group), with ``over="optimizer"`` all of them at once; the two differ."""
    def step(over):
        ours, ref = _params(), _params()
        opt = optforge.Optimizer(_groups(ours), _clipped(over), backend=backend)
        ref_opt = torch.optim.SGD(_groups(ref), lr=0.1)
        for p, q in zip(ours, ref):
            p.grad = torch.full(p.shape, 0.3)
            q.grad = p.grad.clone()
        opt.step()
        for group in ([ref] if over == "optimizer" else [g["params"] for g in _groups(ref)]):
            torch.nn.utils.clip_grad_norm_(group, 0.5)
        ref_opt.step()
        assert max(norm_rel(p.detach(), q.detach()) for p, q in zip(ours, ref)) < 1e-6
        return ours

    apart = [norm_rel(a.detach(), b.detach()) for a, b in zip(step("optimizer"), step("group"))]
    assert max(apart) > 1e-3


def test_routed_groups_share_one_total_per_expression(backend):
    """Groups running different rules total the same reduction together: a mean over the
    optimizer of g is sum(g) / numel over every group, whichever rule each group runs."""
    def centre(lr=1.0):
        g = grad()
        return Rule(param() - lr * (g - total(g, over="optimizer") / numel(over="optimizer")))

    def centre_twice(lr=1.0):
        g = grad()
        return Rule(param() - 2 * lr * (g - total(g, over="optimizer") / numel(over="optimizer")))

    params = _params()
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i))
             for i, p in enumerate(params)]
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g
    opt = optforge.Optimizer([{"params": params[:2]}, {"params": params[2:], "rule": centre_twice}],
                             centre, backend=backend)
    opt.step()
    mean = torch.cat([g.reshape(-1) for g in grads]).double().mean()
    for i, (p, b, g) in enumerate(zip(params, before, grads)):
        expected = b.double() - (1 if i < 2 else 2) * (g.double() - mean)
        assert norm_rel(p.detach(), expected) < 1e-6


def test_the_scope_is_named_in_the_dsl_and_the_plan():
    from optforge.dsl import RuleSpec
    assert "optimizer" in SCOPES
    opt = optforge.Optimizer([torch.nn.Parameter(torch.ones(3))], _clipped("optimizer"))
    plan = opt._compiled(opt.param_groups[0]).plan
    assert "over optimizer" in plan.describe()
    assert [(r.scope, r.span) for r in plan.reductions] == [("group", "optimizer")]
    with pytest.raises(Exception, match="over must be one of"):
        RuleSpec(lambda lr=0.1: Rule(param() - lr * norm(grad(), over="world"))).build(())


def test_a_nonfinite_gradient_skips_every_group_of_the_global_norm(backend):
    """skip_nonfinite: a NaN in one group makes the global norm NaN, so every group that
    shares it skips (none moves), and each counts the skip."""
    params = _params()
    before = [p.detach().clone() for p in params]
    opt = optforge.ClippedSGD(_groups(params), lr=0.1, max_norm=0.5, skip_nonfinite=True,
                              backend=backend)
    for p in params:
        p.grad = torch.ones(p.shape)
    params[4].grad[3] = float("nan")  # the third group only
    opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert [g["nonfinite_skips"] for g in opt.param_groups] == [1, 1, 1]
    params[4].grad[3] = 1.0
    opt.step()
    assert all(not torch.equal(p.detach(), b) for p, b in zip(params, before))
