"""DSL misuse is refused when the optimizer is built, naming what is wrong.

Before: the rule was first built at step 1 (so errors surfaced mid-training); a random
draw while building (Python random, numpy, torch) was frozen into a kernel constant;
NaN/inf/string/list initial values and a list as a state's new value were accepted or
failed later with a TypeError from deep inside SymPy or torch.
"""
import math
import random

import numpy as np
import pytest
import torch

import optforge
from optforge.dsl import DSLError, Rule, grad, matrix_state, param, state


def _params():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    return [p]


def random_python(lr=0.1):
    return Rule(param() - lr * random.random() * grad())


def random_numpy(lr=0.1):
    return Rule(param() - lr * float(np.random.rand()) * grad())


def random_torch(lr=0.1):
    return Rule(param() - lr * float(torch.rand(())) * grad())


def random_init(lr=0.1):
    m = state("m", init=random.gauss(0, 1))
    return Rule(param() - lr * m, m=m + grad())


@pytest.mark.parametrize("rule", [random_python, random_numpy, random_torch, random_init])
def test_a_random_draw_while_building_is_refused_by_the_constructor(rule):
    with pytest.raises(DSLError, match=r"random number generator.*random_scalar"):
        optforge.Optimizer(_params(), rule, backend="torch")


def _with_init(init):
    def rule(lr=0.1):
        m = state("m", init=init)
        return Rule(param() - lr * m, m=m + grad())
    return rule


@pytest.mark.parametrize("init,problem", [
    (math.nan, "not finite"), (math.inf, "not finite"), (-math.inf, "not finite"),
    ("0.5", "a str"), ([0.0, 1.0], "a list"), (True, "a bool"), (None, "a NoneType"),
])
def test_bad_initial_values_are_refused_naming_them(init, problem):
    with pytest.raises(DSLError, match=rf"state 'm' has initial value .*{problem}"):
        optforge.Optimizer(_params(), _with_init(init), backend="torch")


def test_a_non_finite_matrix_state_init_is_refused():
    def rule(lr=0.1):
        q = matrix_state("q", ("rows", "rows"), init=math.nan)
        return Rule(param() - lr * grad(), q=q)
    with pytest.raises(DSLError, match="matrix state 'q' has init nan"):
        optforge.Optimizer(_params(), rule, backend="torch")


def test_a_list_as_a_new_state_value_is_refused():
    def rule(lr=0.1):
        m = state("m")
        return Rule(param() - lr * m, m=[m + grad(), m])
    with pytest.raises(DSLError, match="new value of state 'm' is a list"):
        optforge.Optimizer(_params(), rule, backend="torch")


def test_any_dsl_error_surfaces_in_the_constructor():
    def rule(lr=0.1):
        return Rule(param() - lr * state("m"))  # declared, never written
    with pytest.raises(DSLError, match="declared but never written"):
        optforge.Optimizer(_params(), rule, backend="torch")
    p = torch.nn.Parameter(torch.ones(3))
    opt = optforge.Optimizer([p], lambda lr=0.1: Rule(param() - lr * grad()))
    with pytest.raises(DSLError, match="declared but never written"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "rule": rule})


def test_deterministic_rules_still_build():
    def rule(lr=0.1, beta=0.9):
        m = state("m", init=0.25 * lr)
        m1 = beta * m + (1 - beta) * grad() * math.pi
        return Rule(param() - lr * m1, m=m1)
    p = _params()
    optforge.Optimizer(p, rule, backend="torch").step()
    assert torch.allclose(p[0].detach(), torch.ones(3) - 0.1 * (0.9 * 0.025 + 0.1 * math.pi))
