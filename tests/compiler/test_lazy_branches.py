"""A where() whose choice is a group scalar evaluates only the taken branch's scalars on
the host: ``where(step() > 5, sqrt(step() - 3) * g, g)`` is the rule as written, not a
math domain error at step 1 (which it was when every hoisted scalar ran every step)."""
import math

import sympy as sp
import torch

from optforge import Optimizer
from optforge.compiler import lower
from optforge.dsl import Rule, RuleSpec, grad, log, param, sqrt, step, where


def delayed(lr=0.1):
    p, g, t = param(), grad(), step()
    return Rule(p - lr * where(t > 5, sqrt(t - 3) * g, g))


def nested(lr=0.1, warmup=3.0):
    """Three branches chosen by the step; the middle one's scalar is only defined for
    t > warmup, the last one's for t > 6; a shared sqrt(t - 3) appears twice in a branch."""
    p, g, t = param(), grad(), step()
    late = sqrt(t - 3) * g + lr * sqrt(t - 3) * p
    return Rule(p - lr * where(t <= warmup, g,
                               where(t <= 6, log(t - warmup) * g, late)))


def reference(kind, k, g, p, lr=0.1, warmup=3.0):
    if kind == "delayed":
        return p - lr * (math.sqrt(k - 3) * g if k > 5 else g)
    if k <= warmup:
        return p - lr * g
    if k <= 6:
        return p - lr * math.log(k - warmup) * g
    return p - lr * (math.sqrt(k - 3) * g + lr * math.sqrt(k - 3) * p)


def test_only_the_taken_branch_runs_on_every_backend(backend):
    for kind, rule in (("delayed", delayed), ("nested", nested)):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1023, generator=gen)
        p, ref = torch.nn.Parameter(x.clone()), x.double()
        opt = Optimizer([p], rule, backend=backend)
        for k in range(1, 10):
            g = torch.randn(1023, generator=gen)
            p.grad = g
            opt.step()
            ref = reference(kind, k, g.double(), ref)
        err = (p.detach().double() - ref).norm() / ref.norm()
        assert err < 1e-6, (kind, backend, float(err))


def test_guarded_scalars_are_not_shared_out_of_their_branch():
    """The host CSE leaves guarded values whole: outside a Piecewise no prologue line takes
    a square root or logarithm (they are defined only on their branch's steps)."""
    spec = RuleSpec(nested)
    plan = lower(spec.build(), spec.hyper_symbols)
    assert plan.prologue
    for _, e in plan.prologue:
        unguarded = e.replace(lambda x: isinstance(x, sp.Piecewise), lambda x: sp.Integer(1))
        assert not unguarded.has(sp.log), e
        assert not any(a.is_Pow and a.exp == sp.Rational(1, 2) for a in sp.preorder_traversal(
            unguarded)), e
