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


def normalized_momentum(lr=0.1, beta=0.9, wd=0.0, read_new=False, read_old=False,
                        track=False):
    """p <- p - lr d / ||m||_F with m <- beta m + g and d = g, the new momentum
    (``read_new``) or g + wd m_old (``read_old``); ``track`` adds tr <- tr / 2 + m^2 (a
    state reading the new momentum that nothing else reads)."""
    p, g = param(), grad()
    m_old = state("m")
    m = beta * m_old + g
    d = m if read_new else g + wd * m_old if read_old else g
    extra = {"tr": 0.5 * state("tr") + m * m} if track else {}
    return Rule(p - lr * d / fnorm(m), m=m, **extra)


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


@pytest.mark.parametrize("along,track,moved", [
    ("g", False, ["m"]),           # nothing after the pre-stage reads m: it moves
    ("m_new", False, []),          # the update reads m's new value: m stays
    ("m_old", False, []),          # the update reads m's old value: m stays
    ("g", True, ["tr"]),           # tr reads m's new value: m stays, tr moves
], ids=["moved", "new-read", "old-read", "tracked"])
def test_only_states_nothing_later_reads_move(along, track, moved):
    plan = _plan(normalized_momentum, read_new=along == "m_new", read_old=along == "m_old",
                 track=track)
    pre_states = sorted(r.name for r, _ in plan.pre_plan.stores if r.name != "pre0")
    assert pre_states == moved
    assert sorted(r.name for r, _ in plan.stores) == sorted(
        ({"p", "m"} | ({"tr"} if track else set())) - set(moved))


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


def _reference(w, grads, lr=0.1, beta=0.9, wd=0.3, along="g", track=False):
    w, m = w.double().clone(), torch.zeros_like(w, dtype=torch.float64)
    tr = torch.zeros_like(m)
    for g in grads:
        g = g.double()
        m_new = beta * m + g
        d = {"g": g, "m_new": m_new, "m_old": g + wd * m}[along]
        w = w - lr * d / m_new.norm()
        tr = 0.5 * tr + m_new * m_new
        m = m_new
    return w, m, tr


@pytest.mark.parametrize("along,track", [("g", False), ("m_new", False), ("m_old", False),
                                         ("g", True), ("m_new", True)], ids=str)
@pytest.mark.parametrize("shape", [(7, 13), (33, 5, 3, 3)], ids=str)
def test_rules_with_a_pre_stage_match_plain_torch(backend, shape, along, track):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(shape))
    start = w.detach().clone()
    grads = [torch.randn(shape) for _ in range(10)]
    opt = optforge.Optimizer([w], normalized_momentum, wd=0.3, read_new=along == "m_new",
                             read_old=along == "m_old", track=track, backend=backend)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    want_w, want_m, want_tr = _reference(start, grads, along=along, track=track)
    assert norm_rel(w.detach(), want_w) < 1e-6
    assert norm_rel(opt.state[w]["m"], want_m) < 1e-6
    if track:
        assert norm_rel(opt.state[w]["tr"], want_tr) < 1e-6


def bf16_momentum(lr=0.1, beta=0.9):
    """A narrower stored state: later stages must read the float32 value, not the copy."""
    p, g = param(), grad()
    m = beta * state("m", dtype="bfloat16") + g
    return Rule(p - lr * (m / fnorm(m) + 0.5 * g), m=m)


def test_a_narrow_state_is_not_read_back_rounded(backend):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5))
    start, grads = w.detach().double().clone(), [torch.randn(6, 5) for _ in range(5)]
    opt = optforge.Optimizer([w], bf16_momentum, backend=backend)
    m, want = torch.zeros(6, 5, dtype=torch.float64), start
    for g in grads:
        w.grad = g.clone()
        opt.step()
        new = 0.9 * m + g.double()  # computed in float32 in the kernel, stored as bf16
        want = want - 0.1 * (new / new.norm() + 0.5 * g.double())
        m = new.bfloat16().double()
    assert norm_rel(w.detach(), want) < 1e-5  # reading the bf16 copy gave 9e-4


def test_out_of_range_scalars_raise_before_anything_is_written(backend):
    """Muon's momentum moves to the pre-stage; a bad ns_steps must still leave it as is."""
    w = torch.nn.Parameter(torch.randn(8, 5))
    opt = optforge.Muon([w], backend=backend)
    w.grad = torch.randn(8, 5)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[w].items()}, w.detach().clone()
    for bad in (100, 2.5):
        opt.param_groups[0]["ns_steps"] = bad
        with pytest.raises(ValueError, match=r"orthogonalize: steps = (100|2\.5) must be a "
                                             r"whole number in \[0, 100\) \(Muon's ns_steps\)"):
            opt.step()
        assert torch.equal(w.detach(), before[1])
        assert all(torch.equal(opt.state[w][k], v) for k, v in before[0].items())


def test_channels_last_conv_weights(backend):
    """Buffers follow the parameter's memory layout, so kernels pairing tensors by address
    see the same element; a grad laid out unlike its parameter is staged by the runtime
    (runtime/staging.py): the step equals the dense copy's, bit for bit."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 3, 2, 2).to(memory_format=torch.channels_last))
    ref = torch.nn.Parameter(w.detach().clone().contiguous())
    o1, o2 = optforge.Muon([w], backend=backend), optforge.Muon([ref], backend="torch")
    for _ in range(3):
        g = torch.randn(6, 3, 2, 2)
        w.grad, ref.grad = g.clone().to(memory_format=torch.channels_last), g.clone()
        o1.step()
        o2.step()
    assert norm_rel(w.detach(), ref.detach()) < 1e-6
    if backend == "numba":
        w.grad = torch.randn(6, 3, 2, 2)  # contiguous, unlike w
        dense = torch.nn.Parameter(w.detach().contiguous())
        dense.grad = w.grad.clone()
        optforge.SGD([w], lr=0.1, backend="numba").step()
        optforge.SGD([dense], lr=0.1, backend="numba").step()
        assert w.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(w.detach(), dense.detach())
