"""The numba backend against the torch backend (the oracle), rule by rule and dtype by dtype.

Compile cost is the budget here (a parallel Numba kernel takes a few seconds to
build), so the kernels are shared: the float32 parity runs reuse exactly the
variants that tests/catalogue/test_torch_parity.py already builds, and the other
dtypes use a covering set instead of every rule x dtype:
  * AdamW with bfloat16, float16 and float64 parameters (all tensors that dtype);
  * one "mixed storage" rule whose states are bfloat16, float16 and float64, run with
    float32 and with float64 parameters (every load/store conversion of the printer);
  * one "kitchen sink" rule using every node the printer supports.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optforge
from optforge.dsl import (Rule, abs, clamp, exp, grad, log, maximum, minimum, param, pow, rsqrt,
                          sign, sqrt, state, step, where)
from optforge.runtime.backends import BACKENDS, select
from optforge.runtime.compiled import STATS, compile_rule
from tests.catalogue.test_torch_parity import CONFIGS, _id
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6  # float32: ~10 ulps over 20 steps; both backends do the same float32 ops
# 16-bit storage: both backends compute the same float32 values and round them to
# nearest-even on store; a 1-ulp float32 difference can flip one rounding, and the
# flip is then carried forward, so allow one unit of the format's precision.
TOL_16 = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
TOL_64 = 1e-12  # float64 math on both sides; 1e-12 leaves room for op-order differences

EXTRA = [("Lion", dict(lr=1e-3)), ("Lion", dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)),
         ("Signum", dict(lr=1e-3)), ("Signum", dict(lr=1e-3, momentum=0.5, weight_decay=0.1,
                                                    maximize=True))]


def _pair(name, kw, dtype=torch.float32, shape=(257, 129), steps=20):
    cls = getattr(optforge, name)
    return run_side_by_side(lambda ps: cls(ps, backend="numba", **kw),
                            lambda ps: cls(ps, backend="torch", **kw), shape, steps=steps,
                            dtype=dtype)


def _states_close(o1, o2, tol):
    """States under the same name agree, relative to max(|state|, |grad|) (see parity test)."""
    p1, p2 = o1.param_groups[0]["params"][0], o2.param_groups[0]["params"][0]
    for key, value in o2.state[p2].items():
        if key == "step":
            assert float(o1.state[p1]["step"]) == float(value)
            continue
        ours = o1.state[p1][key]
        assert ours.dtype == value.dtype, key
        scale = max(value.double().norm().item(), p2.grad.double().norm().item(), 1e-30)
        assert (ours.double() - value.double()).norm().item() / scale < tol, key


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS + EXTRA, ids=_id)
def test_every_catalogue_rule_matches_torch_backend(cfg, shape):
    name, kw = cfg
    ours, ref, o1, o2 = _pair(name, kw, shape=shape)
    assert norm_rel(ours, ref) < TOL
    _states_close(o1, o2, TOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(1,), (1023,), (257, 129)], ids=str)
def test_adamw_low_and_high_precision_params(dtype, shape):
    ours, ref, o1, o2 = _pair("AdamW", dict(lr=1e-2, weight_decay=0.1), dtype=dtype, shape=shape)
    assert ours.dtype == dtype
    tol = TOL_64 if dtype == torch.float64 else TOL_16[dtype]
    assert norm_rel(ours, ref) < tol
    _states_close(o1, o2, tol)


def mixed_storage(lr=0.05, beta=0.9):
    """A momentum rule whose states each use another storage dtype."""
    p, g = param(), grad()
    m = beta * state("m", dtype="bfloat16") + (1 - beta) * g
    v = beta * state("v", dtype="float16", init=1) + (1 - beta) * g * g
    w = state("w", dtype="float64") + g
    return Rule(p - lr * (m / sqrt(v + 1e-3) + 1e-3 * w), m=m, v=v, w=w)


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.float64], ids=str)
def test_mixed_state_storage_dtypes(param_dtype):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, mixed_storage, backend="numba"),
        lambda ps: optforge.Optimizer(ps, mixed_storage, backend="torch"),
        (1023,), dtype=param_dtype)
    p1 = o1.param_groups[0]["params"][0]
    assert [o1.state[p1][k].dtype for k in "mvw"] == [torch.bfloat16, torch.float16,
                                                      torch.float64]
    # the 16-bit states round on store: their error reaches the parameter scaled by lr
    assert norm_rel(ours, ref) < TOL_16[torch.bfloat16] * 0.05
    _states_close(o1, o2, TOL_16[torch.bfloat16])


def kitchen_sink(lr=0.01, a=0.5, beta=0.9, lo=-0.5, hi=0.5):
    """Every node the numba printer supports, in one rule."""
    p, g, t = param(), grad(), step()
    m1 = beta * state("m") + (1 - beta) * g
    u = state("u", init=1) + g * g
    cond = ((g > 0) & (p < hi)) | ~(m1 < lo)
    d = where(cond, exp(-abs(g) * a), log(1 + g * g)) * sign(m1)
    d = d + pow(abs(g) + 1, a) * rsqrt(u) + clamp(p, lo, hi) - maximum(m1, minimum(g, p)) / t
    return Rule(p - lr * d, m=m1, u=u)


def test_kitchen_sink_rule_matches_torch_backend():
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, kitchen_sink, backend="numba"),
        lambda ps: optforge.Optimizer(ps, kitchen_sink, backend="torch"), (257, 129))
    assert norm_rel(ours, ref) < TOL
    _states_close(o1, o2, TOL)


def test_changing_hyperparameters_does_not_recompile():
    p = torch.nn.Parameter(torch.randn(1000))
    opt = optforge.AdamW([p], lr=1e-3, backend="numba")
    p.grad = torch.randn(1000)
    opt.step()
    compiled = compile_rule(opt.spec, opt.spec.variant_of(opt.param_groups[0]))
    kernel = compiled.launcher(BACKENDS["numba"]).kernel("float32").kernel
    before = STATS["kernels:numba"], len(kernel.signatures)
    for k in range(5):
        opt.param_groups[0]["lr"] = 1e-3 * (k + 2)
        opt.param_groups[0]["betas"] = (0.8 + 0.01 * k, 0.99 - 0.001 * k)
        opt.param_groups[0]["weight_decay"] = 0.1 * k
        opt.step()
    assert (STATS["kernels:numba"], len(kernel.signatures)) == before == (before[0], 1)


def test_many_tensors_one_call_match_one_at_a_time():
    """A bucket of differently sized tensors (one kernel call) equals per-tensor runs."""
    gen = torch.Generator().manual_seed(3)
    sizes = [1, 7, 4096, 65535, 65536, 65537, 200_000, 3]
    ps = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in sizes]
    singles = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    together = optforge.AdamW(ps, lr=1e-2, backend="numba")
    alone = [optforge.AdamW([q], lr=1e-2, backend="numba") for q in singles]
    for _ in range(3):
        for p, q in zip(ps, singles):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        together.step()
        for o in alone:
            o.step()
    for p, q in zip(ps, singles):
        assert torch.equal(p, q)


def test_transposed_parameter_works_and_strided_view_is_staged():
    p = torch.nn.Parameter(torch.randn(48, 64).t())  # dense, column-major: stride (1, 48)
    ref = torch.nn.Parameter(p.detach().contiguous())
    o1 = optforge.AdamW([p], lr=1e-2, backend="numba")
    o2 = optforge.AdamW([ref], lr=1e-2, backend="torch")
    for _ in range(3):
        g = torch.randn(48, 64).t()  # laid out like p, as autograd makes it
        p.grad, ref.grad = g, g.contiguous()
        o1.step()
        o2.step()
    assert not p.is_contiguous() and norm_rel(p.detach(), ref.detach()) < TOL

    # every other column: not dense, so no kernel can address it; the runtime steps a
    # dense copy and writes it back (runtime/staging.py), exactly as a dense parameter
    q = torch.nn.Parameter(torch.randn(64, 48)[:, ::2])
    dense = torch.nn.Parameter(q.detach().contiguous())
    q.grad = torch.randn(q.shape)
    dense.grad = q.grad.clone()
    optforge.SGD([q], lr=0.1, backend="numba").step()
    optforge.SGD([dense], lr=0.1, backend="numba").step()
    assert not q.is_contiguous() and torch.equal(q.detach(), dense.detach())


def test_auto_picks_numba_on_cpu_for_every_float_dtype():
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        assert select("auto", torch.device("cpu"), dtype).name == "numba"


_RULES = {
    "AdamW": lambda lr, b1, b2, eps, wd: dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd),
    "Lion": lambda lr, b1, b2, eps, wd: dict(lr=lr, betas=(b1, b2), weight_decay=wd),
    "Adagrad": lambda lr, b1, b2, eps, wd: dict(lr=lr, lr_decay=b1 / 10, eps=eps,
                                                weight_decay=wd, initial_accumulator_value=b2),
}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(_RULES)),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       lr=st.floats(1e-4, 0.3), b1=st.floats(0.0, 0.99), b2=st.floats(0.0, 0.999),
       eps=st.floats(1e-10, 1e-2), wd=st.floats(0.0, 0.5), steps=st.integers(1, 6),
       seed=st.integers(0, 2 ** 16))
def test_random_hyperparameters_and_shapes_match_torch_backend(name, shape, lr, b1, b2, eps, wd,
                                                               steps, seed):
    kw = _RULES[name](lr, b1, b2, eps, wd)
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: getattr(optforge, name)(ps, backend="numba", **kw),
        lambda ps: getattr(optforge, name)(ps, backend="torch", **kw), shape, steps=steps,
        seed=seed)
    assert norm_rel(ours, ref) < TOL
    _states_close(o1, o2, TOL)


def test_empty_and_tiny_parameters_and_thread_count_restored():
    import numba
    threads = numba.get_num_threads()
    ps = [torch.nn.Parameter(torch.randn(0)), torch.nn.Parameter(torch.randn(3, 0)),
          torch.nn.Parameter(torch.ones(2))]
    for p in ps:
        p.grad = torch.ones_like(p)
    optforge.SGD(ps, lr=0.5, backend="numba").step()  # serial path (tiny bucket)
    assert torch.equal(ps[2].detach(), torch.full((2,), 0.5))
    assert numba.get_num_threads() == threads


def test_state_of_the_wrong_dtype_is_named():
    p = torch.nn.Parameter(torch.randn(10))
    opt = optforge.AdamW([p], lr=1e-3, backend="numba")
    p.grad = torch.randn(10)
    opt.step()
    opt.state[p]["exp_avg_sq"] = opt.state[p]["exp_avg_sq"].double()
    with pytest.raises(TypeError, match="state 'exp_avg_sq' of parameter 0 of group 0 has dtype "
                                        "torch.float64, expected torch.float32"):
        opt.step()
