"""Scoped states (``state(name, scope=...)``): one value per tensor, row, column, group or
optimizer, read anywhere (broadcast), written from reductions and scalar math, on every
backend (triton under the interpreter on CPU machines), against plain torch written here;
their storage (rows + cols values), checkpoints, and the errors of writing one per element.
"""
import io

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.dsl import (DSLError, Rule, RuleSpec, grad, lerp, mean, param, sqrt, state,
                          step, total)
from optforge.runtime.backends import BACKENDS
from tests.conftest import NATIVE_BACKENDS, norm_rel

ALL_BACKENDS = NATIVE_BACKENDS + (["triton"] if "triton" in BACKENDS else [])
SHAPES = [(5, 7), (3,), (2, 3, 4), ()]  # a matrix, a vector, a 3-D tensor, a scalar
TOL = 1e-6


def factored(lr=0.1, beta=0.8, decay=0.5):
    """Every scope in one rule: a per-tensor product, factored row/column moments, a
    group accumulator and an optimizer-wide one."""
    p, g = param(), grad()
    mu = state("mu_product", init=1.0, scope="tensor")
    row, col = state("row_v", scope="row"), state("col_v", scope="col")
    acc = state("acc", init=1.0, scope="group")
    total_sq = state("total_sq", scope="optimizer")
    mu_new = mu * beta ** step()
    row_new = lerp(row, mean(g * g, over="row"), decay)
    col_new = lerp(col, mean(g * g, over="col"), decay)
    acc_new = acc + total(g * g, over="group")
    total_new = total_sq * beta + total(g * g, over="optimizer")
    u = g / sqrt(row_new * col_new / mean(row_new) + 1e-8)
    return Rule(p - lr * mu_new * u / sqrt(acc_new) - lr * 1e-3 * total_new * p,
                mu_product=mu_new, row_v=row_new, col_v=col_new, acc=acc_new,
                total_sq=total_new)


def _rows(x):
    return x.reshape(x.shape[0] if x.dim() else 1, -1)


def reference(groups, grads_per_step, lr=0.1, beta=0.8, decay=0.5):
    """Plain torch: ``groups`` is a list of lists of tensors (changed in place)."""
    state = {}
    total_sq = 0.0
    for t, grads in enumerate(grads_per_step, start=1):
        flat = [g for gs in grads for g in gs]
        total_sq = total_sq * beta + sum(float((g * g).sum()) for g in flat)
        for ps, gs in zip(groups, grads):
            acc = state.get(id(ps), 1.0) + sum(float((g * g).sum()) for g in gs)
            state[id(ps)] = acc
            for p, g in zip(ps, gs):
                st = state.setdefault(id(p), {"mu": 1.0, "row": 0.0, "col": 0.0})
                st["mu"] = st["mu"] * beta ** t
                g2 = _rows(g * g)
                st["row"] = torch.lerp(torch.as_tensor(st["row"]), g2.mean(1, keepdim=True),
                                       decay)
                st["col"] = torch.lerp(torch.as_tensor(st["col"]), g2.mean(0, keepdim=True),
                                       decay)
                v = st["row"] * st["col"] / st["row"].mean() + 1e-8
                u = _rows(g) / v.sqrt()
                new = _rows(p) - lr * st["mu"] * u / acc ** 0.5 - lr * 1e-3 * total_sq * _rows(p)
                p.copy_(new.reshape(p.shape))


def _params(device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen).to(device) for s in SHAPES[:2]],
            [torch.randn(s, generator=gen).to(device) for s in SHAPES[2:]]]


def _grads(steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[[torch.randn(s, generator=gen) for s in SHAPES[:2]],
             [torch.randn(s, generator=gen) for s in SHAPES[2:]]] for _ in range(steps)]


def _run(opt, groups, grads, device):
    for step_grads in grads:
        for ps, gs in zip(groups, step_grads):
            for p, g in zip(ps, gs):
                p.grad = g.to(device)
        opt.step()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_every_scope_matches_plain_torch(backend):
    device = DEVICE if backend == "triton" else "cpu"
    steps = 6 if backend == "triton" else 20
    grads = _grads(steps)
    ours = [[torch.nn.Parameter(p) for p in ps] for ps in _params(device)]
    ref = _params("cpu")
    opt = optforge.Optimizer([{"params": ps} for ps in ours], factored, backend=backend)
    _run(opt, ours, grads, device)
    with torch.no_grad():
        reference(ref, grads)
    for ps, rs in zip(ours, ref):
        for p, r in zip(ps, rs):
            assert norm_rel(p.detach().cpu(), r) < TOL, p.shape
    # the group state is one value per group, held by each of its parameters
    accs = [[float(opt.state[p]["acc"]) for p in ps] for ps in ours]
    assert accs[0][0] == accs[0][1] and accs[1][0] == accs[1][1] and accs[0][0] != accs[1][0]
    assert len({float(opt.state[p]["total_sq"]) for ps in ours for p in ps}) == 1


def test_state_shapes_and_storage():
    ps = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    opt = optforge.Optimizer(ps, factored, backend="torch")
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    want = {(5, 7): ((5, 1), (1, 7)), (3,): ((3,), (1,)), (2, 3, 4): ((2, 1, 1), (1, 3, 4)),
            (): ((), ())}
    for p in ps:
        st = opt.state[p]
        assert (tuple(st["row_v"].shape), tuple(st["col_v"].shape)) == want[tuple(p.shape)]
        for name in ("mu_product", "acc", "total_sq"):
            assert st[name].shape == ()


def test_row_col_state_bytes_are_rows_plus_cols():
    def factored_only(lr=0.1):
        p, g = param(), grad()
        row, col = state("row_v", scope="row"), state("col_v", scope="col")
        row_new = row + mean(g * g, over="row")
        col_new = col + mean(g * g, over="col")
        return Rule(p - lr * g / sqrt(row_new * col_new + 1), row_v=row_new, col_v=col_new)
    p = torch.nn.Parameter(torch.randn(64, 32))
    opt = optforge.Optimizer([p], factored_only, backend="torch")
    p.grad = torch.randn_like(p)
    opt.step()
    stored = sum(v.untyped_storage().nbytes() for k, v in opt.state[p].items() if k != "step")
    assert stored == (64 + 32) * 4


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_checkpoint_round_trip_continues_bitwise(backend):
    grads = _grads(8)

    def make(groups):
        return optforge.Optimizer([{"params": ps} for ps in groups], factored, backend=backend)
    first = [[torch.nn.Parameter(p) for p in ps] for ps in _params("cpu")]
    straight = [[torch.nn.Parameter(p) for p in ps] for ps in _params("cpu")]
    o1, o_ref = make(first), make(straight)
    _run(o1, first, grads[:4], "cpu")
    _run(o_ref, straight, grads, "cpu")
    buf = io.BytesIO()
    torch.save(o1.state_dict(), buf)
    buf.seek(0)
    second = [[torch.nn.Parameter(p.detach().clone()) for p in ps] for ps in first]
    o2 = make(second)
    o2.load_state_dict(torch.load(buf, weights_only=True))
    _run(o2, second, grads[4:], "cpu")
    for ps, rs in zip(second, straight):
        for p, r in zip(ps, rs):
            assert torch.equal(p, r)


def test_a_bad_checkpoint_changes_nothing():
    p = torch.nn.Parameter(torch.randn(5, 7))
    opt = optforge.Optimizer([p], factored, backend="torch")
    p.grad = torch.randn_like(p)
    opt.step()
    saved = opt.state_dict()
    bad = {"state": {0: {**saved["state"][0], "row_v": torch.zeros(5, 7)}},
           "param_groups": saved["param_groups"]}
    before = {k: v.clone() for k, v in opt.state[p].items()}
    with pytest.raises(ValueError, match="row_v.*shape"):
        opt.load_state_dict(bad)
    assert all(torch.equal(opt.state[p][k], v) for k, v in before.items())


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_a_refused_or_skipped_step_leaves_scoped_states(backend):
    p, q = torch.nn.Parameter(torch.randn(5, 7)), torch.nn.Parameter(torch.randn(3))
    opt = optforge.Optimizer([p, q], factored, backend=backend, skip_nonfinite=True)
    p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items()}
    p_before = p.detach().clone()
    opt.state[q]["row_v"] = torch.zeros(4)  # q's state is refused before anything is written
    with pytest.raises(RuntimeError, match="parameter 1 of group 0: state 'row_v' is"):
        opt.step()
    opt.state[q]["row_v"] = torch.zeros(3)
    q.grad = torch.full_like(q, float("nan"))  # a skipped step writes nothing either
    opt.step()
    assert torch.equal(p, p_before)
    assert all(torch.equal(opt.state[p][k], v) for k, v in before.items())


def test_writing_a_scoped_state_per_element_names_state_and_expression():
    def bad(lr=0.1):
        p, g = param(), grad()
        v = state("v", scope="tensor")
        return Rule(p - lr * g, v=v + g * g)
    with pytest.raises(DSLError, match=r"new value of state 'v'.*varies per element.*g\*\*2"):
        RuleSpec(bad).build()


def test_writing_a_tensor_state_from_row_reductions_is_refused():
    def bad(lr=0.1):
        p, g = param(), grad()
        v = state("v", scope="tensor")
        return Rule(p - lr * g, v=v + mean(g, over="row"))
    with pytest.raises(DSLError, match="state 'v'.*varies per row"):
        RuleSpec(bad).build()


def test_a_scoped_state_starts_at_a_number_or_hyperparameter():
    def bad(lr=0.1):
        p, g = param(), grad()
        v = state("v", init=param(), scope="row")
        return Rule(p - lr * g * v, v=v)
    with pytest.raises(DSLError, match="state 'v'.*number or a hyperparameter"):
        RuleSpec(bad).build()
    def unknown(lr=0.1):
        return Rule(param(), v=state("v", scope="rows"))
    with pytest.raises(DSLError, match="scope 'rows'"):
        RuleSpec(unknown).build()


def test_a_parameter_stepping_late_joins_the_group_value():
    def group_sum(lr=0.1):
        p, g = param(), grad()
        acc = state("acc", init=1.0, scope="group")
        new = acc + total(g * g, over="group")
        return Rule(p - lr * g / sqrt(new), acc=new)
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = optforge.Optimizer([p, q], group_sum, backend="torch")
    p.grad = torch.full((3,), 2.0)
    opt.step()  # q has no gradient: acc = 1 + 12
    assert float(opt.state[p]["acc"]) == 13.0 and q not in opt.state
    p.grad, q.grad = torch.ones(3), torch.ones(2)
    opt.step()  # q reads the group's 13, not its own fresh 1: 13 + 3 + 2
    assert float(opt.state[p]["acc"]) == float(opt.state[q]["acc"]) == 18.0
    assert torch.allclose(q.detach(), torch.full((2,), 1 - 0.1 / 18 ** 0.5))


def test_optimizer_scope_is_shared_per_rule_not_across_rules():
    def counter(lr=0.1):
        p, g = param(), grad()
        n = state("n", scope="optimizer")
        return Rule(p - lr * g, n=n + 1)

    def doubler(lr=0.1):
        p, g = param(), grad()
        n = state("n", init=1.0, scope="optimizer")
        return Rule(p - lr * g, n=n * 2)
    ps = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    opt = optforge.Optimizer([{"params": ps[:1]}, {"params": ps[1:2]},
                              {"params": ps[2:], "rule": doubler}], counter, backend="torch")
    for _ in range(3):
        for p in ps:
            p.grad = torch.ones(2)
        opt.step()
    assert [float(opt.state[p]["n"]) for p in ps] == [3.0, 3.0, 8.0]
