"""The typed plan: kinds, roles, scopes and stages are enum fields the compiler sets once,
never recovered from names; a matrix state is stored whatever it is called."""
import pytest
import torch

from optforge import Optimizer
from optforge.compiler import lower
from optforge.compiler.abi import partial_groups, result_layout, tensor_refs
from optforge.compiler.plan import (ReduceKind, ResultKind, Scope, StageKind, StateKind,
                                    StorageDtype, TensorRole)
from optforge.dsl import Rule, RuleSpec, add_diagonal, given, grad, matmul, matrix_state, param
from optforge.dsl import norm, state, transpose


def _plan(fn, **kw):
    spec = RuleSpec(fn)
    return lower(spec.build(spec.variant_of(spec.defaults)), spec.hyper_symbols, **kw)


def _accumulating(name: str):
    """p <- p - lr (A + I) m with A += g g^T (a matrix state called ``name``) and the
    momentum m = beta m + g: the second step reads A and m as the first step left them."""
    def rule(lr=0.05, beta=0.9):
        p, g = param(), grad()
        m_new = beta * state("m") + g
        acc = matrix_state(name, ("rows", "rows"), init="zeros")
        new = acc + matmul(g, transpose(g))
        return Rule(p - lr * matmul(add_diagonal(new, 1.0), m_new), m=m_new, **{name: new})
    rule.__name__ = f"accumulate_{name}"
    return rule


def test_every_tensor_of_the_plan_has_a_typed_kind_and_role():
    def rule(lr=0.1, c=1.0):
        p, g = param(), grad()
        v = state("v", dtype="bfloat16")
        return Rule(p - lr * given("scale") * g / (norm(g) + c), v=v + g * g)

    plan = _plan(rule)
    assert {n: d.kind for n, d in plan.states.items()} == {"scale": StateKind.INPUT,
                                                          "v": StateKind.STATE}
    assert all(type(d.kind) is StateKind for d in plan.states.values())
    roles = {r.name: r.role for r in tensor_refs(plan)}
    assert roles == {"p": TensorRole.PARAM, "g": TensorRole.GRAD, "scale": TensorRole.INPUT,
                     "v": TensorRole.STATE}
    assert all(type(r) is TensorRole for r in roles.values())
    assert plan.states["v"].dtype is StorageDtype.BFLOAT16 and plan.states["scale"].dtype is None
    assert {r.name: r.dtype for r in tensor_refs(plan)}["v"] is StorageDtype.BFLOAT16
    (op,) = plan.reductions
    assert (op.op, op.scope, op.result_kind) == (ReduceKind.SUM, Scope.TENSOR, ResultKind.SCALAR)
    assert [k for k, _ in plan.stages()] == [StageKind.REDUCE, StageKind.ELEMENTWISE]


def test_the_nonfinite_guard_is_a_typed_group_reduction():
    plan = _plan(_accumulating("left"), guard_nonfinite=True)
    guard = plan.reductions[0]
    assert guard.result == plan.nonfinite_check
    assert (guard.op, guard.scope) == (ReduceKind.NONFINITE, Scope.GROUP)
    assert partial_groups(plan.reduce_stages[0]).tensor == [guard]
    assert result_layout(plan, shapes_known=True) == ([0], [])


@pytest.mark.parametrize("name", ["mat_l", "mat", "left"])
def test_matrix_states_and_buffers_are_told_apart_by_kind(name):
    plan = _plan(_accumulating(name))
    assert plan.states[name].kind is StateKind.MATRIX_STATE and plan.states[name].stored
    (stage,) = plan.matrix_stages
    assert stage.matrix_states == [name]
    assert all(plan.states[b].kind is StateKind.BUFFER for b in stage.buffers)
    assert name not in stage.buffers and stage.buffers  # (A + I) m is a buffer
    assert plan.states_of(StateKind.MATRIX_STATE) == [name]
    buffers = plan.states_of(StateKind.BUFFER)
    assert all(plan.states[b].dtype == StorageDtype.FLOAT32 for b in buffers)
    kinds = [k for k, _ in plan.stages()]
    assert kinds[-2:] == [StageKind.MATRIX, StageKind.ELEMENTWISE]
    if plan.pre_plan is not None:
        assert plan.pre_plan.kind is StageKind.PRE and StageKind.PRE in kinds


def _reference(w: torch.Tensor, grads, lr=0.05, beta=0.9):
    """The same rule in plain torch."""
    p, m, acc = w.clone(), torch.zeros_like(w), torch.zeros(w.shape[0], w.shape[0])
    for g in grads:
        m = beta * m + g
        acc = acc + g @ g.T
        p = p - lr * (acc + torch.eye(w.shape[0])) @ m
    return p, m, acc


@pytest.mark.parametrize("name", ["mat_l", "left"])
def test_a_matrix_state_named_mat_is_stored_and_read_back(name, backend):
    """``matrix_state("mat_l")`` once lowered to a buffer and silently stopped being
    stored: after two steps its value (and the parameter, which reads it on the second
    step) must match plain torch, on every native backend."""
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    grads = [torch.randn(4, 3) * 0.3 for _ in range(2)]
    p = torch.nn.Parameter(w.clone())
    opt = Optimizer([p], _accumulating(name), backend=backend)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    want_p, want_m, want_acc = _reference(w, grads)
    assert set(opt.state[p]) >= {name, "m", "step"}
    torch.testing.assert_close(opt.state[p][name], want_acc, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(opt.state[p]["m"], want_m, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(p.detach(), want_p, rtol=1e-5, atol=1e-6)
    # one step alone differs: the second step did read the stored accumulator
    assert not torch.allclose(_reference(w, grads[1:])[2], want_acc)
