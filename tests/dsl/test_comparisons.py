"""Equality in rules: eq()/ne() compare values on every backend; Python's == and != on DSL
expressions (a structural comparison, i.e. a constant) are refused where they would become
a condition; Python's max()/math.sqrt() on expressions get an error saying what to write."""
import math

import pytest
import torch

from optforge import Optimizer
from optforge.dsl import DSLError, Rule, RuleSpec, eq, grad, ndim, ne, param, state, step, where


def first_visit(lr=0.1, d0=1.0):
    """Steps with g while the state still holds its initial value d0 (per element), then
    stops; the state moves only where g > 0. Also: a scalar condition eq(step(), 2)."""
    p, g, t = param(), grad(), step()
    d = state("d", init=d0)
    fresh = where(eq(d, d0), g, 0)
    moved = where(ne(d, d0), 1, 0)
    bonus = where(eq(t, 2), 0.5 * g, 0)
    return Rule(p - lr * (fresh + bonus) - 0.01 * moved, d=where(g > 0, d + 1, d))


def test_eq_and_ne_compare_values_on_every_backend(backend):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1023, generator=gen)
    p, ref, d = torch.nn.Parameter(x.clone()), x.double(), torch.ones(1023, dtype=torch.float64)
    opt = Optimizer([p], first_visit, backend=backend)
    for k in range(1, 7):
        g = torch.randn(1023, generator=gen)
        p.grad = g
        opt.step()
        g = g.double()
        fresh = torch.where(d == 1.0, g, 0.0)
        bonus = 0.5 * g if k == 2 else 0.0
        ref = ref - 0.1 * (fresh + bonus) - 0.01 * (d != 1.0).double()
        d = torch.where(g > 0, d + 1, d)
    assert torch.allclose(p.detach().double(), ref, rtol=0, atol=1e-6)
    assert torch.equal(opt.state[p]["d"].double(), d)


def _rule(body):
    def rule(lr=0.1, d0=1.0):
        return body(param(), grad(), state("d", init=d0), d0, lr)
    return rule


@pytest.mark.parametrize("body,message", [
    (lambda p, g, d, d0, lr: Rule(p - lr * where(d == d0, g, 0), d=d + 1),
     "where() condition is the Python bool False; '==' and '!=' on DSL expressions"),
    (lambda p, g, d, d0, lr: Rule(p - lr * where(d != d0, g, 0), d=d + 1),
     "where() condition is the Python bool True"),
    (lambda p, g, d, d0, lr: Rule(p - lr * max(g, 0)),
     "write maximum(a, b), minimum(a, b), clamp(x, lo, hi) or where(cond, a, b)"),
    (lambda p, g, d, d0, lr: Rule(p - lr * math.sqrt(g * g)),
     "use the DSL's own sqrt, rsqrt, exp, log, abs, sign, pow"),
], ids=["==", "!=", "max", "math.sqrt"])
def test_python_operations_on_expressions_are_refused_with_the_fix(body, message):
    with pytest.raises(DSLError, match="rule 'rule'") as info:
        RuleSpec(_rule(body)).build()
    assert message in str(info.value)


def shape_dependent_mask(lr=0.1):
    """A condition over a where() on ndim(), as a cautious mask of Adafactor's update:
    it raised KeyError('pop from an empty set') inside SymPy while the rule was built."""
    p, g = param(), grad()
    direction = where(ndim() > 1, 2 * g, -g)
    return Rule(p - lr * where(direction * p > 0, g, -0.5 * g))


@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
def test_a_where_inside_a_condition_on_every_backend(shape, backend):
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen))
    ref = p.detach().double().clone()
    opt = Optimizer([p], shape_dependent_mask, backend=backend)
    for _ in range(3):
        g = torch.randn(shape, generator=gen)
        p.grad = g
        opt.step()
        g = g.double()
        direction = 2 * g if len(shape) > 1 else -g
        ref = ref - 0.1 * torch.where(direction * ref > 0, g, -0.5 * g)
    assert torch.allclose(p.detach().double(), ref, rtol=0, atol=1e-6)
