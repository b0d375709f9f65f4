"""Malformed rules raise DSLError with a message that names the problem."""
import pytest
import sympy as sp

from optforge.dsl import (DSLError, Rule, RuleSpec, grad, matmul, mean, norm, param, sqrt,
                          state, step, transpose, where)


def rule_unknown_symbol(lr=0.1):
    x = sp.Symbol("x")
    return Rule(param() - lr * x * grad())


def rule_state_read_never_written(lr=0.1):
    m = state("exp_avg")
    return Rule(param() - lr * m)


def rule_state_written_never_declared(lr=0.1):
    return Rule(param() - lr * grad(), momentum=grad())


def rule_nonscalar_hyper(lr=[0.1, 0.2]):  # noqa: B006 - the point of the test
    return Rule(param() - grad())


def rule_string_hyper(lr="0.1"):
    return Rule(param() - grad())


def rule_reduction(lr=0.1):
    m = state("m", init=norm(param()))
    return Rule(param() - lr * grad(), m=m)


def rule_matrix(lr=0.1):
    return Rule(param() - lr * matmul(grad(), param()))


def rule_comparison_as_value(lr=0.1):
    return Rule(param() - lr * sp.Piecewise((1, grad() > 0), (0, True)) * (grad() > 0))


def rule_unsupported_function(lr=0.1):
    return Rule(param() - lr * sp.gamma(grad()))


def rule_division_by_zero(lr=0.1):
    return Rule(param() - lr * grad() * sp.Integer(1) / 0)


def rule_complex(lr=0.1):
    return Rule(param() - lr * sp.I * grad())


def rule_returns_tuple(lr=0.1):
    return param() - lr * grad()


def rule_positional_argument(lr):
    return Rule(param() - lr * grad())


def rule_bad_state_dtype(lr=0.1):
    m = state("m", dtype="int8")
    return Rule(param() - lr * m, m=grad())


def rule_reserved_state_name(lr=0.1):
    m = state("step")
    return Rule(param() - lr * m, step=grad())


def rule_state_init_uses_step(lr=0.1):
    # (init=grad() is allowed: the gradient of the step that creates the state)
    m = state("m", init=step())
    return Rule(param() - lr * m, m=grad())


def rule_where_without_condition(lr=0.1):
    return Rule(param() - lr * where(grad(), 1, 0))


def rule_none_param(lr=0.1):
    return Rule(None)


def rule_conflicting_state(lr=0.1):
    a = state("m", init=0)
    b = state("m", init=1)
    return Rule(param() - lr * (a + b), m=grad())


def rule_python_branch_on_tensor(lr=0.1):
    g = grad()
    return Rule(param() - (lr if g > 0 else 0) * g)


CASES = [
    (rule_unknown_symbol, "unknown symbol x"),
    (rule_state_read_never_written, "'exp_avg' is declared but never written"),
    (rule_state_written_never_declared, "writes 'momentum', which was never declared"),
    (rule_nonscalar_hyper, "hyperparameter 'lr' has default [0.1, 0.2]"),
    (rule_string_hyper, "hyperparameter 'lr' has default '0.1'"),
    (rule_reduction, "state 'm' init sqrt(sum_tensor(p**2)) uses a reduction"),
    (rule_matrix, "matmul of (rows, cols) and (rows, cols): inner dimensions differ in "
                  "matmul(g, p)"),
    (rule_comparison_as_value, "comparison"),
    (rule_unsupported_function, "unsupported operation gamma"),
    (rule_division_by_zero, "not finite"),
    (rule_complex, "complex"),
    (rule_returns_tuple, "returned Add, not Rule"),
    (rule_positional_argument, "argument 'lr' has no default"),
    (rule_bad_state_dtype, "dtype 'int8'"),
    (rule_reserved_state_name, "'step' is reserved"),
    (rule_state_init_uses_step, "init t uses t"),
    (rule_where_without_condition, "where() condition g is not a comparison"),
    (rule_none_param, "the new parameter is None"),
    (rule_conflicting_state, "declared twice"),
    (rule_python_branch_on_tensor, "rule_python_branch_on_tensor"),
]


@pytest.mark.parametrize("fn,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_malformed_rule_raises_dsl_error(fn, message):
    with pytest.raises(DSLError) as info:
        RuleSpec(fn).build()
    text = str(info.value)
    assert message in text
    assert fn.__name__ in text  # the rule is always named


def test_errors_name_the_expression():
    def rule_matrix_deep(lr=0.1):
        g = grad()
        return Rule(param() - lr * sqrt(transpose(g) + 1) * g)
    with pytest.raises(DSLError, match=r"transpose\(g\) in -g\*lr\*sqrt\(transpose\(g\) \+ 1\) \+ p"):
        RuleSpec(rule_matrix_deep).build()


def test_well_formed_rule_builds():
    def ok(lr=0.1, beta=0.9):
        p, g, t = param(), grad(), step()
        m = state("m")
        m1 = beta * m + (1 - beta) * g
        return Rule(p - lr * m1 / sqrt(1 - beta**t), m=m1)

    assert set(RuleSpec(ok).build().updates) == {"m"}


@pytest.mark.parametrize("make,message", [
    (lambda lr: norm(grad(), ord=3), "norm(..., ord=3): supported orders are 1, 2"),
    (lambda lr: mean(grad(), over="batch"), "over must be one of ('tensor', 'row', 'col', 'group', 'optimizer')"),
    (lambda lr: mean(lr), "mean(lr) reduces a scalar"),
])
def test_bad_reductions_are_named(make, message):
    def rule_bad_reduction(lr=0.1):
        return Rule(param() - lr * make(lr) * grad())
    with pytest.raises(DSLError, match="rule 'rule_bad_reduction'") as info:
        RuleSpec(rule_bad_reduction).build()
    assert message in str(info.value)


def test_names_that_would_alias_compiler_temporaries_are_refused():
    def rule_temp_hyper(s0=0.1):
        return Rule(param() - s0 * grad())

    def rule_temp_state(lr=0.1):
        e1 = state("e1")
        return Rule(param() - lr * grad(), e1=e1 + grad())

    with pytest.raises(DSLError, match="hyperparameter name 's0' is reserved"):
        RuleSpec(rule_temp_hyper)
    with pytest.raises(DSLError, match="state name 'e1' is reserved"):
        RuleSpec(rule_temp_state).build()
