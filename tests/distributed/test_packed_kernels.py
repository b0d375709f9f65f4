"""The generated kernels pack and count sign bits themselves (compiler/packed_signs.py):
the pre-stage's bytes equal a plain-torch packing written here, and the elementwise
stage's count of gathered bytes equals a plain float computation of the workers' sum,
mean and vote, on every backend, bit for bit, at awkward lengths (1 element, not a
multiple of 8, past a numba block, 100k). The packed path holds no float32 sign buffer.
"""
from __future__ import annotations

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET before triton loads

import optforge
from optforge.compiler import lower
from optforge.dsl import Rule, allreduce, grad, majority_vote, sign
from optforge.dsl.spec import RuleSpec
from optforge.kernels.registry import BACKENDS
from optforge.runtime import collective_stage
from optforge.runtime.compiled import CompiledPlan
from tests.conftest import NATIVE_BACKENDS

LENGTHS = [1, 7, 9, 64, 100_003, 70_001]  # one launch: several tensors, odd tails
ALL = [*NATIVE_BACKENDS, "triton"]


def _device(backend: str) -> torch.device:
    return DEVICE if backend == "triton" else torch.device("cpu")


def sign_sum(lr=0.1):
    return Rule(allreduce(sign(grad()), op="sum", bits=1))


def sign_mean(lr=0.1):
    return Rule(allreduce(sign(grad()), op="mean", bits=1))


def vote(lr=0.1):
    return Rule(majority_vote(-sign(grad())))


def _plan(fn):
    spec = RuleSpec(fn)
    return spec, lower(spec.build(), spec.hyper_symbols)


def _reference_bytes(values: torch.Tensor) -> torch.Tensor:
    """Plain torch, bit by bit: bit i of byte k is element 8k + i >= 0, padding clear."""
    bits = (values.reshape(-1) >= 0).to(torch.int64)
    padded = torch.zeros((bits.numel() + 7) // 8 * 8, dtype=torch.int64)
    padded[:bits.numel()] = bits
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.int64)
    return (padded.view(-1, 8) * weights).sum(1).to(torch.uint8)


def _run(fn, backend, params, grads, fill: dict, pre: bool):
    """One launch of the rule's pre-stage (``pre``) or elementwise kernel on ``backend``,
    the plan's columns filled from ``fill`` (name -> one tensor per parameter)."""
    spec, plan = _plan(fn)
    stage = plan.pre_plan if pre else plan
    launcher = BACKENDS[backend].build(stage)
    states = [fill.get(name, [None] * len(params)) for name in stage.states]
    scalars = CompiledPlan(spec, stage).scalars({"lr": 0.1}, 1.0)
    launcher.check(params, grads, states, [f"parameter {j}" for j in range(len(params))])
    launcher(params, grads, states, scalars)


@pytest.mark.parametrize("backend", ALL)
def test_the_pre_stage_writes_the_packed_bytes(backend):
    device = _device(backend)
    gen = torch.Generator().manual_seed(17)
    grads = [torch.randn(n, generator=gen) for n in LENGTHS]
    for g in grads:
        g[::5] = 0.0  # sent as +1
        g[1::9] = -0.0
    grads[3][10] = float("nan")  # flagged, and a clear bit
    params = [torch.zeros(n, device=device) for n in LENGTHS]
    segments = [torch.full((1 + (n + 7) // 8,), 0xAB, dtype=torch.uint8, device=device)
                for n in LENGTHS]
    for s in segments:
        s[0] = 0  # the runtime clears the flag; the kernel writes every other byte
    _run(sign_sum, backend, params, [g.to(device) for g in grads],
         {"send_allreduce_sum": segments}, pre=True)
    for n, g, s in zip(LENGTHS, grads, segments):
        got, want = s.cpu()[1:], _reference_bytes(torch.sign(g))
        if n == 64:  # a NaN's bit is never counted (the step is refused): not compared
            got[1] &= ~4 & 0xFF
            want[1] &= ~4 & 0xFF
        assert torch.equal(got, want), (backend, n)
        # the flag: the sent value is NaN on every backend (sign(NaN) is NaN, as numpy's;
        # before, torch.sign(NaN) = 0 sent +1 on the torch backend and nothing refused)
        assert int(s[0]) == int(n == 64), (backend, n)


def _gathered(world: int, gen: torch.Generator):
    """Every worker's payload (a skip byte, then a segment per length), stacked, and each
    worker's values (with zeros, which vote +1)."""
    values = [[torch.randn(n, generator=gen) for n in LENGTHS] for _ in range(world)]
    rows = []
    for w in range(world):
        for v in values[w]:
            v[::6] = 0.0
        rows.append(torch.cat([torch.zeros(1, dtype=torch.uint8)] + [
            torch.cat([torch.zeros(1, dtype=torch.uint8), _reference_bytes(v)])
            for v in values[w]]))
    return torch.stack(rows), values


def _views(gathered: torch.Tensor):
    at, views = 1, []
    for n in LENGTHS:
        size = 1 + (n + 7) // 8
        views.append(gathered[:, at:at + size])
        at += size
    return views


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("world", [1, 3, 4])
def test_the_elementwise_stage_counts_the_gathered_bytes(backend, world):
    device = _device(backend)
    gen = torch.Generator().manual_seed(world)
    gathered, values = _gathered(world, gen)
    gathered = gathered.to(device)
    for fn, name, finish in [
            (sign_sum, "allreduce_sum", lambda t: t),
            (sign_mean, "allreduce_mean", lambda t: t / world),
            (vote, "vote", torch.sign)]:
        negate = fn is vote  # majority_vote(-sign(g)): the workers' values are -sign(g)
        params = [torch.full((n,), 9.0, device=device) for n in LENGTHS]
        grads = [torch.zeros(n, device=device) for n in LENGTHS]
        _run(fn, backend, params, grads, {name: _views(gathered)}, pre=False)
        for j, p in enumerate(params):
            bits = torch.stack([torch.where(values[w][j] >= 0, 1.0, -1.0)
                                for w in range(world)])
            want = finish(bits.sum(0))
            assert torch.equal(p.cpu(), want), (backend, fn.__name__, LENGTHS[j], negate)


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_float64_parameters_get_the_float32_mean(backend):
    """The count becomes the result in float32 (the buffer it replaces was float32), then
    widened: a mean over 3 workers is float32's quotient, not float64's."""
    gen = torch.Generator().manual_seed(5)
    gathered, values = _gathered(3, gen)
    params = [torch.zeros(n, dtype=torch.float64) for n in LENGTHS]
    grads = [torch.zeros(n, dtype=torch.float64) for n in LENGTHS]
    _run(sign_mean, backend, params, grads, {"allreduce_mean": _views(gathered)}, pre=False)
    differ = False
    for j, p in enumerate(params):
        total = torch.stack([torch.where(values[w][j] >= 0, 1.0, -1.0) for w in range(3)]).sum(0)
        assert torch.equal(p, (total / 3).double()), (backend, LENGTHS[j])
        differ |= not torch.equal(p, total.double() / 3)
    assert differ  # (float64's quotient would be another value)


def test_the_packed_path_has_no_float32_sign_buffer(monkeypatch):
    """The plan's buffers of a 1-bit collective are packed, and a step sends the uint8
    segments the pre-stage kernel wrote (no float32 tensor of the signs exists)."""
    _, plan = _plan(vote)
    buffers = {n: str(d.dtype) for n, d in plan.states.items() if d.kind == "buffer"}
    assert buffers == {"send_vote": "sign_bits", "vote": "sign_votes"}
    assert [(r.name, str(r.dtype)) for r, _ in plan.pre_plan.stores] == [
        ("send_vote", "sign_bits")]
    assert ("vote", "sign_votes") in [(r.name, str(r.dtype)) for r in plan.loads]
    sent = []
    original = collective_stage._exchange_1bit

    def spy(parts, group, skipping):
        sent.extend(v for *_, sends, _ in parts for v in sends)
        return original(parts, group, skipping)
    monkeypatch.setattr(collective_stage, "_exchange_1bit", spy)
    for backend in NATIVE_BACKENDS:
        sent.clear()
        p = torch.nn.Parameter(torch.randn(37, 3))
        opt = optforge.DistributedLion([p], lr=0.01, backend=backend)
        p.grad = torch.randn(37, 3)
        opt.step()
        assert [(v.dtype, v.numel()) for v in sent] == [(torch.uint8, 1 + 14)], backend
        assert set(opt.state[p]) == {"step", "exp_avg"}
