"""A step that fails changes nothing, and its error names the right parameter.

Before the check phase (runtime/stepping.py) groups and buckets were stepped one after
another, each checked only when its turn came: an error in group 1 (or in the second
dtype bucket of a group) came after group 0 (the first bucket) had been updated, and
the launchers named a tensor by its place in the bucket ("parameter 0") rather than in
its group.
"""
import copy

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.dsl import Rule, grad, param, state


def momentum(lr=0.1, beta=0.9):
    p, g = param(), grad()
    m = state("m")
    m1 = beta * m + g
    return Rule(p - lr * m1, m=m1)


def _model():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5))
    b = torch.nn.Parameter(torch.randn(4, 3))
    c = torch.nn.Parameter(torch.randn(3, 4))
    return a, b, c


def _grads(*params):
    for p in params:
        p.grad = torch.randn_like(p)


def _snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            {id(p): copy.deepcopy(opt.state[p]) for p in params if p in opt.state})


def _assert_unchanged(opt, params, snap):
    values, states = snap
    for p, v in zip(params, values):
        assert torch.equal(p.detach(), v)
    assert {id(p) for p in params if opt.state.get(p)} == set(states)
    for p in params:
        for key, value in states.get(id(p), {}).items():
            assert torch.equal(opt.state[p][key], value), key


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_a_bad_gradient_in_a_later_group_moves_nothing(backend):
    # (a transposed gradient is no error any more: runtime/staging.py steps a dense copy)
    a, b, c = _model()
    opt = optforge.Optimizer([{"params": [a]}, {"params": [b, c]}], momentum, backend=backend)
    _grads(a, b, c)
    opt.step()
    snap = _snapshot(opt, (a, b, c))
    _grads(a, b)
    c.grad = torch.randn(3, 4).to_sparse()  # a sparse gradient this rule does not take
    with pytest.raises((ValueError, RuntimeError), match="parameter 1 of group 1"):
        opt.step()
    _assert_unchanged(opt, (a, b, c), snap)
    c.grad = c.grad.to_dense()  # fixed: the next step runs
    opt.step()
    assert float(opt.state[a]["step"]) == 2 and float(opt.state[c]["step"]) == 2


def test_a_bad_state_in_the_second_dtype_bucket_names_its_parameter(backend):
    a = torch.nn.Parameter(torch.randn(6))
    d = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = optforge.Optimizer([a, d], momentum, backend=backend)
    _grads(a, d)
    opt.step()
    opt.state[d]["m"] = torch.zeros(7, dtype=torch.float64)  # a corrupted state
    snap = _snapshot(opt, (a, d))
    _grads(a, d)
    # the optimizer (torch backend) or the launcher (numba) names it
    with pytest.raises((RuntimeError, ValueError),
                       match=r"parameter 1 of group 0: state 'm'|state 'm' of parameter 1 of "
                             r"group 0"):
        opt.step()
    _assert_unchanged(opt, (a, d), snap)


def test_new_parameters_get_no_state_from_a_failed_step(backend):
    a, b, _ = _model()
    opt = optforge.Optimizer([{"params": [a]}, {"params": [b]}], momentum, backend=backend)
    a.grad = torch.randn_like(a)
    b.grad = torch.randn(4, 3).to_sparse()
    snap = _snapshot(opt, (a, b))
    with pytest.raises(RuntimeError, match="parameter 0 of group 1 has a sparse gradient"):
        opt.step()
    _assert_unchanged(opt, (a, b), snap)  # a moved not, and neither got a state


def test_a_bad_prologue_in_a_later_group_moves_nothing(backend):
    a, b, _ = _model()
    opt = optforge.Adam([{"params": [a]}, {"params": [b]}], backend=backend)
    # (the constructor refuses beta_1 = 1 as torch does; a scheduler or a user may set it)
    opt.param_groups[1]["betas"] = (1.0, 0.999)
    _grads(a, b)
    snap = _snapshot(opt, (a, b))
    with pytest.raises(ValueError, match="beta_1=1"):
        opt.step()
    _assert_unchanged(opt, (a, b), snap)


def test_a_matrix_check_in_a_later_group_moves_nothing():
    a, b, c = _model()
    opt = optforge.Muon([{"params": [b]}, {"params": [c], "ns_steps": -1}], lr=0.02,
                        backend="numba")
    _grads(b, c)
    snap = _snapshot(opt, (b, c))
    with pytest.raises(ValueError):
        opt.step()
    _assert_unchanged(opt, (b, c), snap)


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_pointer_and_length_that_disagree_are_refused(backend):
    """A view whose storage was shrunk under it: the kernel would write past the end."""
    buf = torch.zeros(16, device=DEVICE if backend == "triton" else "cpu")
    p = torch.nn.Parameter(buf[8:])
    p.untyped_storage().resize_(40)  # 10 floats: the view's elements 2..7 are outside
    p.grad = torch.ones_like(p)
    opt = optforge.SGD([p], lr=0.1, backend=backend)
    with pytest.raises(AssertionError, match="parameter 0 of group 0.*disagree"):
        opt.step()
    assert not opt.state.get(p)
