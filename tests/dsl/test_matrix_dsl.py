"""Matrix expressions: shapes are checked when the rule is built, errors name the expression."""
import pytest

from optforge.dsl import (DSLError, Rule, RuleSpec, add_diagonal, batch_mean, every, grad,
                          inv_root, layer_input, layer_output_grad, matmul, matrix_state,
                          param, sherman_morrison, solve, state, transpose)
from optforge.dsl.matrix import matrix_state as declare_matrix


def build(fn):
    return RuleSpec(fn).build()


def test_a_two_sided_preconditioner_builds():
    def rule(lr=0.1, k=3):
        p, g = param(), grad()
        left = matrix_state("L", ("rows", "rows"))
        right = matrix_state("R", ("cols", "cols"), init="zeros")
        new_left = left + matmul(g, transpose(g))
        pre = every(k, inv_root(new_left, 4, 1e-6), matrix_state("PL", ("rows", "rows")))
        return Rule(p - lr * matmul(matmul(pre, g), right), L=new_left, R=right + 1, PL=pre)

    built = build(rule)
    assert built.states["L"].kind == "matrix" and built.states["L"].eye
    assert not built.states["R"].eye and built.states["R"].shape == ("cols", "cols")


@pytest.mark.parametrize("body,message", [
    (lambda p, g: Rule(p - matmul(g, g)), "inner dimensions differ in matmul(g, g)"),
    (lambda p, g: Rule(p - matmul(g, transpose(g))),
     "this matrix expression is (rows, rows), but the parameter's update needs (rows, cols)"),
    (lambda p, g: Rule(p - inv_root(g, 2)), "InvRoot needs a square matrix, got (rows, cols)"),
    (lambda p, g: Rule(p - solve(matmul(transpose(g), g), g)),
     "solve: (cols, cols) and (rows, cols) differ in rows"),
], ids=["matmul", "update-shape", "inv_root", "solve"])
def test_shape_errors_name_the_expression(body, message):
    def rule(lr=0.1):
        return body(param(), grad())

    with pytest.raises(DSLError) as info:
        build(rule)
    assert message in str(info.value)


def test_matrix_state_rules():
    def elementwise_use(lr=0.1):
        a = matrix_state("A", ("rows", "rows"))
        return Rule(param() - lr * a, A=a)

    with pytest.raises(DSLError, match=r"A is matrix-shaped \(rows, rows\); use it inside"):
        build(elementwise_use)

    def wrong_new_value(lr=0.1):
        a = matrix_state("A", ("rows", "rows"))
        g = grad()
        return Rule(param() - lr * g, A=a + matmul(transpose(g), g))

    with pytest.raises(DSLError, match="do not broadcast"):
        build(wrong_new_value)

    def every_mismatch(lr=0.1):
        a = matrix_state("A", ("rows", "rows"))
        g = grad()
        b = every(2, matmul(transpose(g), g), a)
        return Rule(param() - lr * matmul(b, g), A=b)

    with pytest.raises(DSLError, match=r"every\(\): the value is \(cols, cols\) but otherwise"):
        build(every_mismatch)

    def bad_declarations(lr=0.1):
        declare_matrix("A", ("rows", "cols"), init="identity")

    with pytest.raises(DSLError, match="init='identity' needs a square shape"):
        build(bad_declarations)

    def bad_dims(lr=0.1):
        declare_matrix("A", ("rows", "depth"))

    with pytest.raises(DSLError, match="use two of 'rows', 'cols', 1"):
        build(bad_dims)


def test_layer_statistics_and_rank_one_updates_check_shapes():
    def mkor_like(lr=0.1):
        a, d = layer_input(), layer_output_grad()
        ainv = matrix_state("Ainv", ("cols", "cols"))
        new = sherman_morrison(ainv, batch_mean(a), batch_mean(a))
        return Rule(param() - lr * matmul(grad(), new) + 0 * matmul(transpose(d), a), Ainv=new)

    build(mkor_like)

    def wrong_side(lr=0.1):
        d = layer_output_grad()
        ainv = matrix_state("Ainv", ("cols", "cols"))
        new = sherman_morrison(ainv, batch_mean(d), batch_mean(d))
        return Rule(param() - lr * matmul(grad(), new), Ainv=new)

    with pytest.raises(DSLError, match=r"sherman_morrison needs \(cols, 1\) columns, got "
                                       r"\(rows, 1\)"):
        build(wrong_side)


def test_scalars_where_scalars_belong():
    def tensor_damping(lr=0.1):
        g = grad()
        return Rule(param() - lr * matmul(add_diagonal(matmul(g, transpose(g)), state("x")), g),
                    x=state("x"))

    with pytest.raises(DSLError, match="lam = x must be a scalar"):
        build(tensor_damping)


@pytest.mark.parametrize("name", ["mat_l", "mat", "matrix_left"])
def test_a_matrix_state_named_like_a_buffer_is_still_stored(name):
    """Matrix states and the stage's ``mat<i>`` buffers are told apart by the plan's
    fields, not by name: a state called "mat_l" once lowered to a buffer and silently
    stopped being stored."""
    import torch

    from optforge import Optimizer

    def make(state_name):
        def rule(lr=0.1):
            p, g = param(), grad()
            acc = declare_matrix(state_name, ("rows", "rows"), init="zeros")
            new = acc + matmul(g, transpose(g))
            return Rule(p - lr * matmul(add_diagonal(new, 1.0), g), **{state_name: new})
        rule.__name__ = f"acc_{state_name}"
        return rule

    torch.manual_seed(0)
    w = torch.randn(4, 3)
    results = {}
    for state_name in (name, "left"):
        p = torch.nn.Parameter(w.clone())
        opt = Optimizer([p], make(state_name), backend="torch")
        for _ in range(3):
            p.grad = torch.ones_like(p) * 0.1
            opt.step()
        results[state_name] = (p.detach().clone(), opt.state[p][state_name].clone())
    assert torch.equal(results[name][0], results["left"][0])
    assert torch.equal(results[name][1], results["left"][1])
    assert results[name][1].abs().sum() > 0  # three accumulated g g^T, not the zeros init
