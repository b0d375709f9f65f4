"""Reduce stages on the numba backend against the torch backend (the oracle).

Compile cost is the budget (each rule variant and dtype is a few parallel kernels):
one rule, ``every_scope``, covers every op and scope at once (sum, max, count, numel,
ndim over tensor, row, column and group, row x column values, a second stage using
row results), and it runs on shapes that hit every layout case of the launcher: rows
shorter than a block, rows longer than a block (``(2, 70001)``: columns partials are
per element), rows straddling block boundaries, 1-D and 4-D tensors, several tensors
in one bucket (group scopes across tensors and blocks).
"""
import math
import re

import numba
import pytest
import torch

import optforge
from optforge.catalogue.lamb import LAMB
from optforge.dsl import (Rule, amax, count, dot, grad, maximum, mean, ndim, norm, numel, param,
                          sqrt, state, where)
from optforge.dsl import abs as abs_
from optforge.dsl import sum as dsl_sum
from optforge.compiler.printers.numba import numba_source
from optforge.kernels.numba.launcher import BLOCK, PARALLEL_MIN, NumbaLauncher
from optforge.runtime.backends import BACKENDS
from optforge.runtime.compiled import STATS, compile_rule
from tests.conftest import SHAPES, norm_rel, run_side_by_side

# float32: both backends accumulate in float32, in different orders (torch: its
# vectorized cascade; numba: LLVM's vectorized sum or 16 lanes per block, blocks in
# order), so reductions differ by a few ulps; every value below stays well inside 1e-6
# relative.
TOL = 1e-6
TOL_16 = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
TOL_64 = 1e-12


def every_scope(lr=0.1):
    p, g = param(), grad()
    a = dsl_sum(g * p) / numel() + amax(g)
    row = mean(g, over="row") - amax(abs_(g), over="row") + numel(over="row") / numel()
    col = dsl_sum(g, over="col") / numel(over="col") + amax(p, over="col")
    glob = (norm(g, over="group") + count(g > 0, over="group")) / numel(over="group")
    nested = amax(g - row) + dsl_sum(row * col, over="row") / numel(over="row")  # stage 1
    update = g * a + row + col * glob + row * col + nested + 0.01 * ndim()
    return Rule(p - lr * update / 10)  # every term O(1): the update stays O(lr)


def _pair(rule, shapes, steps=3, dtype=torch.float32, **kw):
    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64).to(dtype))
            for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    o1 = optforge.Optimizer(ours, rule, backend="numba", **kw)
    o2 = optforge.Optimizer(ref, rule, backend="torch", **kw)
    for _ in range(steps):
        for p, q in zip(ours, ref):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype)
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    return ours, ref, o1, o2


@pytest.mark.parametrize("shape", SHAPES + [(3, 4, 5, 6), (2, 70001), (70001, 3), ()], ids=str)
def test_every_op_and_scope_matches_torch_backend(shape):
    ours, ref, _, _ = _pair(every_scope, [shape])
    assert norm_rel(ours[0].detach(), ref[0].detach()) < TOL


def test_every_op_and_scope_over_a_bucket_of_tensors():
    shapes = [(7, 13), (1,), (257, 129), (1023,), (3, 4, 5, 6), (300, 500)]
    ours, ref, _, _ = _pair(every_scope, shapes)
    for p, q in zip(ours, ref):
        assert norm_rel(p.detach(), q.detach()) < TOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_lamb_low_and_high_precision_params(dtype):
    ours, ref, o1, o2 = run_side_by_side(lambda ps: LAMB(ps, lr=1e-2, backend="numba"),
                                         lambda ps: LAMB(ps, lr=1e-2, backend="torch"),
                                         (257, 129), dtype=dtype)
    assert ours.dtype == dtype
    assert norm_rel(ours, ref) < (TOL_64 if dtype == torch.float64 else TOL_16[dtype])


def _determinism_run(threads: int) -> list[torch.Tensor]:
    """LAMB-like group rule on a bucket big enough for the parallel path."""
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        ours, _, _, _ = _pair(every_scope, [(600, 700), (1023,), (5, 70001)], steps=2)
    finally:
        numba.set_num_threads(before)
    return [p.detach().clone() for p in ours]


def test_reductions_are_deterministic_and_independent_of_thread_count():
    assert 600 * 700 + 1023 + 5 * 70001 > PARALLEL_MIN and 600 * 700 > 4 * BLOCK
    one = _determinism_run(1)
    assert all(torch.equal(a, b) for a, b in zip(one, _determinism_run(1)))
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert all(torch.equal(a, b) for a, b in zip(one, _determinism_run(2)))


def rm_plus(lr=1.0):
    """Regret matching+: Q <- max(Q + <g, x> - g, 0); x <- Q / sum(Q) needs <g, x> first."""
    x, g = param(), grad()
    q = maximum(state("regret") + dot(g, x) - g, 0)
    s = dsl_sum(q)
    return Rule(where(s > 0, q / s, 1 / numel()), regret=q)


@pytest.mark.parametrize("shape", [(3,), (20,), (4, 5)], ids=str)
def test_nested_stages_regret_matching(shape):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, rm_plus, backend="numba"),
        lambda ps: optforge.Optimizer(ps, rm_plus, backend="torch"), shape, steps=10)
    plan = compile_rule(o1.spec, o1.spec.variant_of(o1.param_groups[0])).plan
    assert len(plan.reduce_stages) == 2
    assert norm_rel(ours, ref) < TOL


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_skip_nonfinite_on_numba(bad):
    gen = torch.Generator().manual_seed(1)
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(7, 13), (1023,)]]
    refs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    o1 = optforge.AdamW(ps, lr=1e-2, skip_nonfinite=True, backend="numba")
    o2 = optforge.AdamW(refs, lr=1e-2, skip_nonfinite=True, backend="torch")
    for k in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in ps]
        if k == 1:
            grads[1][17] = bad
            before = [p.detach().clone() for p in ps]
        for p, q, g in zip(ps, refs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
        if k == 1:
            assert all(torch.equal(p.detach(), b) for p, b in zip(ps, before))
    assert o1.param_groups[0]["nonfinite_skips"] == 1 == o2.param_groups[0]["nonfinite_skips"]
    for p, q in zip(ps, refs):
        assert norm_rel(p.detach(), q.detach()) < TOL


def test_auto_runs_reduce_stages_on_numba_and_lr_changes_do_not_recompile():
    p = torch.nn.Parameter(torch.randn(300))
    opt = LAMB([p], lr=1e-3)  # backend="auto"
    p.grad = torch.randn(300)
    opt.step()
    compiled = compile_rule(opt.spec, opt.spec.variant_of(opt.param_groups[0]))
    launcher = compiled.launcher(BACKENDS["numba"])
    # (the runtime's launcher is staging's wrapper around the backend's: runtime/staging.py)
    assert isinstance(opt.launcher_for(compiled, p.device, p.dtype).inner, NumbaLauncher)
    module = launcher.kernel("float32")
    kernels = [module.kernel, *module.REDUCE_STAGES]
    before = STATS["kernels:numba"], [len(k.signatures) for k in kernels]
    for k in range(4):
        opt.param_groups[0]["lr"] = 1e-3 * (k + 2)
        opt.param_groups[0]["weight_decay"] = 0.1 * k
        opt.step()
    assert (STATS["kernels:numba"], [len(k.signatures) for k in kernels]) == before
    assert before[1] == [1, 1]


def test_a_transposed_parameter_is_staged_for_reductions():
    """The numba kernels refuse row reductions over a permuted layout, and a permuted
    layout would sum in another order: the runtime steps a contiguous copy instead
    (runtime/staging.py), so the result is the contiguous parameter's, bit for bit."""
    p = torch.nn.Parameter(torch.randn(48, 64).t())  # dense, column-major
    p.grad = torch.randn(48, 64).t()
    for rule in (every_scope, LAMB.rule):
        a, b = p.detach().clone(), p.detach().contiguous()
        a.grad, b.grad = p.grad, p.grad.contiguous()
        optforge.Optimizer([a], rule, backend="numba").step()
        optforge.Optimizer([b], rule, backend="numba").step()
        assert not a.is_contiguous() and torch.equal(a, b)


def test_a_stage_of_sums_is_one_vectorized_accumulator_and_max_keeps_lanes():
    """LAMB's stage (two sums of squares per tensor): a strict kernel hands each block to
    a reassociating accumulation function with a strict value helper, and LLVM really
    vectorizes the accumulation; a stage with a max or row/column scopes keeps the 16
    lanes."""
    p = torch.nn.Parameter(torch.randn(5000))
    p.grad = torch.randn(5000)
    LAMB([p], backend="numba").step()
    compiled = compile_rule(LAMB.rule, LAMB.rule.variant_of(LAMB.rule.defaults))
    source = numba_source(compiled.plan, "float32")
    stage = source[source.index("_r0_x("):]
    assert "np.full(LANES" not in stage
    assert re.search(r"@njit_cached\(fastmath=False, [^\n]*\)\ndef \w+_r0_x\(", source)
    assert re.search(r"@njit_cached\(fastmath=\{'reassoc'\}, [^\n]*\)\ndef \w+_r0_acc\(",
                     source)
    assert re.search(r"@njit_cached\(parallel=True, fastmath=False, [^\n]*\)\ndef \w+_r0\(",
                     source)
    cached = compiled.launcher(BACKENDS["numba"]).kernel("float32").REDUCE_STAGES[0]
    namespace = {}
    # "<fresh>" is no file: njit_cached compiles these without Numba's disk cache
    exec(compile(source, "<fresh>", "exec"), namespace)
    fresh = namespace["REDUCE_STAGES"][0]
    signature = cached.signatures[0]
    fresh.compile(signature)
    accumulate = next(f for n, f in namespace.items() if n.endswith("_r0_acc"))
    assert re.search(r"fadd reassoc <\d+ x float>",
                     accumulate.inspect_llvm(accumulate.signatures[0]))
    spec = optforge.RuleSpec(every_scope)
    lanes = numba_source(compile_rule(spec, spec.variant_of(spec.defaults)).plan, "float32")
    assert "np.full(LANES" in lanes


def zero_divisor_sum(lr=0.1):
    p, g = param(), grad()  # g / max(g, 0): 1 where g > 0, -inf where g < 0
    return Rule(p - lr * g * where(dsl_sum(g / maximum(g, 0)) > 0, 1.0, 2.0))


def test_division_by_zero_in_a_summed_value_gives_inf_nan_like_torch():
    """The value helper follows numpy's error model, as prange bodies do: x / 0 is
    inf or nan, never a ZeroDivisionError."""
    ours, ref, _, _ = _pair(zero_divisor_sum, [(300,)])
    assert torch.equal(ours[0].detach(), ref[0].detach())


def count_above_rms(lr=1.0):
    p, g = param(), grad()
    m = norm(p) / sqrt(numel())  # a scope value the reduce and elementwise kernels share
    c = count(g >= m)
    return Rule(p - lr * where(g >= m, 1.0 / c, 0.0))


def test_scope_values_in_a_summing_stage_are_computed_strictly():
    """The threshold norm(p)/sqrt(n) is 0.99999994 for p = ones(3) computed strictly and
    1.0 when LLVM may fuse sqrt(a) * (1/sqrt(b)) into one division: the counting stage
    must see the same threshold as the update (found in review: numba moved 2 instead of
    1 when the whole reduce kernel allowed reassociation)."""
    spec = optforge.RuleSpec(count_above_rms)
    moved = {}
    for backend in ("numba", "torch"):
        p = torch.nn.Parameter(torch.ones(3))
        p.grad = torch.tensor([1.0, 0.99999994, -5.0])
        optforge.Optimizer([p], spec, backend=backend).step()
        moved[backend] = (1 - p.detach()).tolist()
    assert moved["numba"] == moved["torch"] == [0.5, 0.5, 0.0]
