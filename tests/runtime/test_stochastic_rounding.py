"""Stochastic rounding through the optimizer: the numba, torch and triton (interpreter)
backends store the same bits given the same seed, steps reproduce from (seed, step), and
a resumed run continues the same stream."""
import copy

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: F401,I001 - sets TRITON_INTERPRET first

import optforge

BACKENDS = ["torch", "numba", "triton"]
SHAPES = [(37, 11), (4099,), (3,)]  # odd sizes: counters past a block, a partial quad


def _run(cls, backend, dtype=torch.float32, steps=3, seed=5, **options):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).to(dtype) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(steps)]
    opt = cls(params, backend=backend, seed=seed, **options)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _bits(t):
    return t.view(torch.int16) if t.element_size() == 2 else t


def _stored(params, opt, names):
    return [_bits(opt.state[p][n]).clone() for p in params for n in names]


@pytest.mark.parametrize("cls,names", [(optforge.AdamW, ("exp_avg", "exp_avg_sq")),
                                       (optforge.Lion, ("exp_avg",)),
                                       (optforge.LAMB, ("exp_avg", "exp_avg_sq"))])
def test_backends_store_the_same_state_bits(cls, names):
    # LAMB has a reduce stage: its elementwise kernel is another printer's on each backend
    stored = {b: _stored(*_run(cls, b, state_dtype="bfloat16", rounding="stochastic"), names)
              for b in BACKENDS}
    for backend in ("numba", "triton"):
        assert all(torch.equal(a, b) for a, b in zip(stored["torch"], stored[backend])), backend
    nearest = _stored(*_run(cls, "torch", state_dtype="bfloat16"), names)
    assert not all(torch.equal(a, b) for a, b in zip(stored["torch"], nearest))


@pytest.mark.parametrize("param_rounding", ["stochastic", "kahan"])
def test_backends_store_the_same_bf16_parameters(param_rounding):
    # SGD's update is one multiply-add: float32 math agrees bit for bit everywhere
    runs = {b: _run(optforge.SGD, b, torch.bfloat16, lr=0.01, momentum=0.9,
                    param_rounding=param_rounding) for b in BACKENDS}
    extra = ("kahan_comp",) if param_rounding == "kahan" else ()
    for backend in ("numba", "triton"):
        ours, ref = runs[backend], runs["torch"]
        assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(ours[0], ref[0])), backend
        assert all(torch.equal(a, b) for a, b in zip(_stored(*ours, ("momentum_buffer",) + extra),
                                                     _stored(*ref, ("momentum_buffer",) + extra)))


def test_the_seed_and_the_step_decide_the_bits():
    options = dict(state_dtype="bfloat16", rounding="stochastic")
    names = ("exp_avg", "exp_avg_sq")
    first = _stored(*_run(optforge.AdamW, "numba", **options), names)
    again = _stored(*_run(optforge.AdamW, "numba", **options), names)
    other = _stored(*_run(optforge.AdamW, "numba", seed=6, **options), names)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_a_resumed_run_continues_the_stream():
    options = dict(state_dtype="bfloat16", rounding="stochastic", backend="numba", seed=9)
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(500, generator=gen) for _ in range(4)]
    p = torch.randn(500, generator=gen)
    whole = optforge.AdamW([p], **options)
    for k, g in enumerate(grads):
        p.grad = g.clone()
        whole.step()
        if k == 1:
            saved, saved_p = copy.deepcopy(whole.state_dict()), p.clone()
    q = saved_p.clone()
    resumed = optforge.AdamW([q], **options)
    resumed.load_state_dict(saved)
    for g in grads[2:]:
        q.grad = g.clone()
        resumed.step()
    assert torch.equal(q, p)
    assert torch.equal(_bits(resumed.state[q]["exp_avg"]), _bits(whole.state[p]["exp_avg"]))


@pytest.mark.parametrize("cls,names", [(optforge.AdamW, ("exp_avg", "exp_avg_sq")),
                                       (optforge.LAMB, ("exp_avg", "exp_avg_sq"))])
def test_backends_store_the_same_float16_state_bits(cls, names):
    stored = {b: _stored(*_run(cls, b, state_dtype="float16", rounding="stochastic"), names)
              for b in BACKENDS}
    for backend in ("numba", "triton"):
        assert all(torch.equal(a, b) for a, b in zip(stored["torch"], stored[backend])), backend
    nearest = _stored(*_run(cls, "torch", state_dtype="float16"), names)
    assert not all(torch.equal(a, b) for a, b in zip(stored["torch"], nearest))


def test_backends_store_the_same_float16_parameters():
    runs = {b: _run(optforge.SGD, b, torch.float16, lr=0.01, momentum=0.9,
                    param_rounding="stochastic") for b in BACKENDS}
    for backend in ("numba", "triton"):
        assert all(torch.equal(_bits(a), _bits(b))
                   for a, b in zip(runs[backend][0], runs["torch"][0])), backend


@pytest.mark.parametrize("cls", [optforge.LAMB, optforge.Muon])
@pytest.mark.parametrize("param_rounding", ["kahan", "stochastic"])
def test_bf16_parameters_through_reduce_and_matrix_stages(cls, param_rounding):
    # LAMB: a reduce stage (another elementwise printer per backend); Muon: a matrix
    # stage and an elementwise pre-stage; bf16 states rounded stochastically as well
    found = {}
    for backend in BACKENDS:
        gen = torch.Generator().manual_seed(0)
        params = [torch.randn(33, 20, generator=gen).bfloat16() for _ in range(2)]
        opt = cls(params, backend=backend, param_rounding=param_rounding,
                  state_dtype="bfloat16", rounding="stochastic")
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).bfloat16()
            opt.step()
        # the compensation is float32 math on reduction results (LAMB's trust ratio),
        # whose summation order differs by backend: compared in value, not in bits
        momentum = "exp_avg" if cls is optforge.LAMB else "momentum_buffer"
        found[backend] = ([_bits(p) for p in params] + _stored(params, opt, [momentum]),
                          [opt.state[p]["kahan_comp"].float() for p in params
                           if "kahan_comp" in opt.state[p]])
    for backend in ("numba", "triton"):
        bits, compensation = found[backend]
        assert all(torch.equal(a, b) for a, b in zip(found["torch"][0], bits)), backend
        for a, b in zip(found["torch"][1], compensation):
            torch.testing.assert_close(a, b, rtol=0, atol=2e-3 * float(b.abs().max()))
