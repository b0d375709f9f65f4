"""The torch printer's where() with a scalar condition (the step, a hyperparameter).

Such a where picks a whole branch per call. Before the fix the torch backend returned
the picked tensor itself: ``acc = where(k > 0, m, acc)`` then aliased the loaded ``m``,
and the store of the new ``m`` (earlier in the step) leaked into ``acc``; a scalar
branch (``where(t > 1, 0.0, g)``) came out as a Python float, so ``torch.abs``,
``torch.maximum`` and ``torch.clamp`` raised TypeError on the steps that picked it.
Numba evaluates per element and never had either problem: it is the reference here.
"""
import pytest
import torch

import optforge
from optforge.dsl import Rule, abs, clamp, grad, maximum, param, sign, state, step, where


def alias_rule(lr=0.1, k=1.0):
    p, g = param(), grad()
    m, acc = state("m"), state("acc")
    m1 = 0.5 * m + g
    acc1 = where(k > 0, m, acc)  # the OLD m: read before this step's store of m
    return Rule(p - lr * acc1, m=m1, acc=acc1)


def _wrapped(outer):
    def rule(lr=0.1):
        p, g = param(), grad()
        u = where(step() > 1, 0.5, g)  # a scalar at step >= 2, the gradient at step 1
        v = where(step() > 2, p, -0.25)
        return Rule(p - lr * (outer(u) + outer(v)))
    rule.__name__ = f"where_in_{outer.__name__}"
    return rule


def _max(x):
    return maximum(x, 0.1)


def _clamp(x):
    return clamp(x, -0.3, 0.3)


def _run(rule, backend, steps, **hyper):
    w = torch.nn.Parameter(torch.linspace(-1, 1, 7))
    opt = optforge.Optimizer([w], rule, backend=backend, **hyper)
    for k in range(steps):
        w.grad = torch.linspace(-2, 3, 7) * (k + 1)
        opt.step()
    return w.detach(), opt.state[w]


@pytest.mark.parametrize("k", [1.0, -1.0])
def test_scalar_condition_never_aliases_a_state_written_later(k):
    w, state_t = _run(alias_rule, "torch", 3, k=k)
    w_n, state_n = _run(alias_rule, "numba", 3, k=k)
    assert torch.allclose(state_t["acc"], state_n["acc"], rtol=1e-6, atol=0)
    assert torch.allclose(w, w_n, rtol=1e-6, atol=1e-7)
    if k > 0:  # acc is m as it was before each step: after 3 steps, m after 2
        g = torch.linspace(-2, 3, 7)
        assert torch.allclose(state_t["acc"], 0.5 * g + 2 * g, rtol=1e-6)


@pytest.mark.parametrize("outer", [abs, sign, _max, _clamp])
def test_scalar_condition_inside_functions_at_every_step(outer):
    rule = _wrapped(outer)
    w, _ = _run(rule, "torch", 3)
    w_n, _ = _run(rule, "numba", 3)
    assert torch.allclose(w, w_n, rtol=1e-6, atol=1e-7)


def shared_condition(lr=0.5, a=0.8):
    """CSE names the shared scalar condition ``t > 2`` as an element temporary holding a
    Python bool; the torch backend then called torch.where(bool, ...): TypeError (found
    by the cross-backend property test)."""
    p, g, t = param(), grad(), step()
    m = state("m")
    state("v", init=param())  # declared: written below
    m1 = where(t > 2, m, 3.0)
    v1 = clamp(where(t > 2, m, a), -3.0, 3.0) + g
    return Rule(p - lr * v1, m=m1, v=v1)


def test_a_shared_scalar_condition_named_by_cse():
    w, state_t = _run(shared_condition, "torch", 4)
    w_n, state_n = _run(shared_condition, "numba", 4)
    assert torch.allclose(w, w_n, rtol=1e-6, atol=1e-7)
    assert torch.allclose(state_t["v"], state_n["v"], rtol=1e-6, atol=1e-7)
