"""The elementwise pre-stage of matrix rules: what it takes over, what it must leave alone,
and that rules using it step exactly as a plain-torch reference on every backend."""
import pytest
import sympy as sp
import torch

import optforge
from optforge.compiler import lower
from optforge.compiler.passes import traffic
from optforge.compiler.plan import PreResult
from optforge.dsl.matrix import InvRoot
from optforge.dsl import Rule, every, fnorm, grad, matmul, matrix_state, param, state
from tests.conftest import norm_rel
from tests.runtime.test_matrix_states import two_sided


def _plan(fn, **kw):
    opt = optforge.Optimizer([torch.nn.Parameter(torch.zeros(2, 2))], fn, **kw)
    return lower(opt.spec.build(opt.spec.variant_of(opt.param_groups[0])),
                 opt.spec.hyper_symbols)


def normalized_momentum(lr=0.1, beta=0.9, wd=0.0, read_old=False):
    """p <- p - lr m / ||m||_F (- lr wd m_old when ``read_old``), m <- beta m + g."""
    p, g = param(), grad()
    m_old = state("m")
    m = beta * m_old + g
    new_p = p - lr * m / fnorm(m)
    if read_old:  # the update reads the state's value before the step
        new_p = new_p - lr * wd * m_old
    return Rule(new_p, m=m)


def test_muon_fuses_momentum_with_nesterov_then_update_with_decay():
    plan = optforge.Muon.rule
    plan = lower(plan.build(plan.default_variant), plan.hyper_symbols)
    pre = plan.pre_plan
    assert sorted(r.name for r, _ in pre.stores) == ["momentum_buffer", "pre0"]
    assert sorted(r.name for r in pre.loads) == ["g", "momentum_buffer"]
    assert [r.name for r in plan.matrix_stages[0].loads] == ["pre0"]
    assert [r.name for r, _ in plan.stores] == ["p"]
    assert sorted(r.name for r in plan.loads) == ["mat0", "p"]
    # pre: g, buf in; buf, bf16 pre0 out. matrix: pre0 in, bf16 mat0 out. update: p, mat0
    # in; p out
    assert (traffic(plan).read, traffic(plan).written) == (16, 12)
    assert "elementwise pre-stage" in plan.describe()


def test_states_stay_when_the_matrix_stage_can_fail_and_every_stays_lazy():
    """two_sided: (beta m + g) becomes a buffer, but m keeps its store in the update
    (inv_root may raise); the arguments under every(k, ...) are not precomputed."""
    plan = _plan(two_sided)
    pre = plan.pre_plan
    assert [r.name for r, _ in pre.stores] == ["pre0"]
    assert "m" in [r.name for r, _ in plan.stores]
    stage = plan.matrix_stages[0]
    roots = [node for _, e in stage.temps + stage.outputs for node in sp.preorder_traversal(e)
             if isinstance(node, InvRoot)]
    assert roots and not any(isinstance(s, PreResult) for r in roots for s in r.free_symbols)


def test_a_state_whose_old_value_is_read_later_stays_in_the_update():
    moved = _plan(normalized_momentum)
    kept = _plan(normalized_momentum, read_old=True)
    assert [r.name for r, _ in moved.stores] == ["p"]
    assert "m" in [r.name for r, _ in moved.pre_plan.stores]
    assert sorted(r.name for r, _ in kept.stores) == ["m", "p"]
    assert [r.name for r, _ in kept.pre_plan.stores] == ["pre0"]


def test_bare_tensor_arguments_need_no_pre_stage():
    def preconditioned(lr=0.1):
        left = matrix_state("L", ("rows", "rows"), init="identity")
        right = matrix_state("R", ("cols", "cols"), init="identity")
        return Rule(param() - lr * matmul(matmul(left, grad()), right), L=left, R=right)

    def lazy(lr=0.1):  # a compound argument, but under every(k, ...)
        left = matrix_state("L", ("rows", "rows"), init="identity")
        return Rule(param() - lr * every(2, matmul(left, 2 * grad() + param()), grad()),
                    L=left)
    assert _plan(preconditioned).pre_plan is None
    assert _plan(lazy).pre_plan is None


def _reference(w, grads, lr=0.1, beta=0.9, wd=0.0, read_old=False):
    w, m = w.double().clone(), torch.zeros_like(w, dtype=torch.float64)
    for g in grads:
        m_new = beta * m + g.double()
        w = w - lr * m_new / m_new.norm() - (lr * wd * m if read_old else 0)
        m = m_new
    return w


@pytest.mark.parametrize("read_old", [False, True], ids=["moved", "kept"])
@pytest.mark.parametrize("shape", [(7, 13), (33, 5, 3, 3)], ids=str)
def test_rules_with_a_pre_stage_match_plain_torch(backend, shape, read_old):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(shape))
    start = w.detach().clone()
    grads = [torch.randn(shape) for _ in range(10)]
    opt = optforge.Optimizer([w], normalized_momentum, wd=0.3, read_old=read_old,
                             backend=backend)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    assert norm_rel(w.detach(), _reference(start, grads, wd=0.3, read_old=read_old)) < 1e-6
