"""The DSL's collectives without a process group: refused forms (errors naming the
expression), the plan's split, and the step on every backend, where a collective is the
identity over one worker (1 bit: the worker's own bits, 0 sent as +1)."""
from __future__ import annotations

import pytest
import sympy as sp
import torch

import optforge
from optforge.compiler import CompileError, lower
from optforge.distributed import NonFiniteCollectiveError
from optforge.dsl import (DSLError, Rule, allreduce, grad, majority_vote, norm, orthogonalize,
                          param, sign, state)
from optforge.dsl.spec import RuleSpec
from tests.conftest import NATIVE_BACKENDS
from tests.distributed import collective_workers as cw
from tests.triton_env import DEVICE


def _build(fn):
    spec = RuleSpec(fn)
    return lower(spec.build(), spec.hyper_symbols)


@pytest.mark.parametrize("body, message", [
    (lambda g: allreduce(g, bits=1), r"sends 1 bit per element, so its argument must be a "
                                     r"sign \(sign\(...\) or -sign\(...\)\), got g"),
    (lambda g: majority_vote(2 * sign(g) + g), r"majority_vote\(...\) sends 1 bit.*got g \+ 2\*sign\(g\)"),
    (lambda g: allreduce(g * norm(g)), r"must be elementwise.*holds sum_tensor\(g\*\*2\): g\*sqrt"),
    (lambda g: allreduce(majority_vote(sign(g))), r"must be elementwise.*holds majority_vote"),
    (lambda g: allreduce(g, op="max"), r"op='max'; expected one of \('sum', 'mean'\)"),
    (lambda g: allreduce(g, bits=8), r"bits=8; expected 32 or 1"),
    (lambda g: allreduce(g, bits=True), r"bits=True; expected 32 or 1"),
    (lambda g: allreduce(sp.Integer(3)), r"3 is not one \(a scalar is the same on every"),
    (lambda g: g * norm(allreduce(g)), r"a reduction of a collective's result"),
    (lambda g: orthogonalize(allreduce(g)), r"collective .* inside a matrix operation"),
    (lambda g: allreduce(g, name="t"), r"collective result name 't' is reserved"),
])
def test_refused_forms_name_the_expression(body, message):
    def rule(lr=0.1):
        return Rule(param() - lr * body(grad()))
    with pytest.raises(DSLError, match=message):
        RuleSpec(rule).build()


def test_two_collectives_with_one_name_or_a_state_s_name_are_refused():
    def twice(lr=0.1):
        g = grad()
        return Rule(param() - lr * (allreduce(g) + allreduce(2 * g)))
    with pytest.raises(CompileError, match="two different collectives are named "
                                           "'allreduce_sum'.*give one another name="):
        _build(twice)

    def clash(lr=0.1):
        v = state("vote")
        return Rule(param() - lr * majority_vote(sign(grad())), vote=v + 1)
    with pytest.raises(CompileError, match="needs the name 'vote', which a state"):
        _build(clash)


def test_plan_pre_stage_sends_and_keeps_states_in_the_final_kernel():
    plan = _build(cw.negative_vote)
    assert [(op.result, op.send, op.op, op.bits) for op in plan.collectives] == \
        [("vote", "send_vote", "vote", 1)]
    assert [r.name for r, _ in plan.pre_plan.stores] == ["send_vote"]
    assert "vote" in [r.name for r in plan.loads] and "m" in [r.name for r, _ in plan.stores]
    assert "vote <- vote over workers of send_vote (1-bit packed all-gather)" in plan.describe()

    def muon_and_vote(lr=0.1, mu=0.9):  # the pre-stage would take over buf's update
        g = grad()
        buf = mu * state("buf") + g
        return Rule(param() - lr * (orthogonalize(buf + g) + majority_vote(sign(g))), buf=buf)
    plan = _build(muon_and_vote)
    pre = [r.name for r, _ in plan.pre_plan.stores]
    assert "send_vote" in pre and "buf" not in pre  # a collective may refuse the step
    assert "buf" in [r.name for r, _ in plan.stores]
    assert not plan.pre_plan.collectives


def _steps(backend, supplied=False):
    params = [torch.nn.Parameter(t.to(DEVICE)) for t in cw.initial()]
    opt = cw.make_optimizer(params, backend)
    for k in range(cw.STEPS):
        for p, g in zip(params, cw.grads(k, 0)):
            p.grad = g.to(DEVICE)
        inputs = None
        if supplied:  # the vote of group 2 supplied by hand: nothing communicated for it
            inputs = {"vote": {params[2]: torch.full(cw.SHAPES[2], 0.5, device=DEVICE)}}
        opt.step(inputs=inputs)
    return [p.detach().cpu() for p in params], opt


@pytest.mark.parametrize("backend", [*NATIVE_BACKENDS, "triton"])
def test_one_worker_is_the_identity_on_every_backend(backend):
    got, _ = _steps(backend)
    want = cw.initial()
    m = torch.zeros(cw.SHAPES[2])
    for k in range(cw.STEPS):
        g = cw.grads(k, 0)
        m = 0.5 * m + 0.5 * g[2]
        want = [want[0] - 0.1 * g[0], want[1] - 0.1 * torch.where(g[1] >= 0, 1.0, -1.0),
                want[2] - 0.1 * torch.where(-torch.sign(m) >= 0, 1.0, -1.0)]
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got[2], want[2], rtol=1e-6, atol=1e-7)
    assert (cw.grads(0, 0)[1] == 0).any()  # zeros were sent, as +1


def test_a_supplied_result_is_used_instead():
    got, opt = _steps("torch", supplied=True)
    start = cw.initial()
    torch.testing.assert_close(got[2], start[2] - 0.1 * 0.5 * cw.STEPS, rtol=1e-6, atol=1e-7)
    assert set(opt.state[opt.param_groups[2]["params"][0]]) == {"step", "m"}


@pytest.mark.parametrize("bits", [1, 32])
def test_a_non_finite_value_refuses_or_skips_and_changes_nothing(bits):
    def rule(lr=0.1):
        g = grad()
        return Rule(param() - lr * allreduce(sign(g) if bits == 1 else g, op="sum", bits=bits))
    p = torch.nn.Parameter(torch.randn(9))
    before = p.detach().clone()
    opt = optforge.Optimizer([p], rule)
    p.grad = torch.randn(9)
    p.grad[4] = float("nan")
    with pytest.raises(NonFiniteCollectiveError, match="NaN or Inf in the values they would "
                                                       "send.*no rank has stepped"):
        opt.step()
    assert torch.equal(p.detach(), before) and not opt.state
    skipping = optforge.Optimizer([p], rule, skip_nonfinite=True)
    skipping.step()
    assert torch.equal(p.detach(), before)
    assert skipping.param_groups[0]["nonfinite_skips"] == 1
    p.grad[4] = 1.0
    skipping.step()
    assert not torch.equal(p.detach(), before)
