"""torch.compile around a training step that calls ``opt.step()``.

The step is one graph break (``torch.compiler.disable``): Dynamo neither crashes inside
numba's dispatcher nor guards on optforge's objects, so after the first compiled step
nothing recompiles. Checked cold (the first step ever runs compiled) and warm (eager
steps first), for the whole step compiled and for ``opt.step`` alone. The "eager"
Dynamo backend is enough: graph breaks and recompiles are decided by Dynamo, not by
Inductor, and it keeps the test fast on a 2-core machine.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import optforge


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def _optimizer(name, model):
    if name == "torch.AdamW":
        return torch.optim.AdamW(model.parameters(), lr=1e-2)
    if name == "Muon":  # matrix rule: 2-D weights only
        return optforge.Muon([p for p in model.parameters() if p.dim() == 2], lr=1e-2)
    return getattr(optforge, name)(model.parameters(), lr=1e-2)


def _data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(32, 8, generator=gen), torch.randn(32, 4, generator=gen)


def _step_breaks() -> int:
    """Graph breaks whose reason is the optimizer step (torch's or ours)."""
    return sum(n for reason, n in counters["graph_break"].items()
               if "Optimizer.step" in reason or "graph_break()" in reason)


def _train(name, what: str, warm: bool, steps: int = 4):
    """Losses of ``steps`` compiled steps, and the Dynamo frame count after each."""
    model = _model()
    opt = _optimizer(name, model)
    x, y = _data()

    def forward_backward():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    def train_step():
        loss = forward_backward()
        opt.step()
        return loss

    if warm:  # eager steps first: the state exists before Dynamo sees the step
        for _ in range(2):
            train_step()
    if what == "model+step":
        compiled = torch.compile(train_step, backend="eager")
    else:
        compiled_step = torch.compile(opt.step, backend="eager")

        def compiled():
            loss = forward_backward()
            compiled_step()
            return loss
    losses, frames = [], []
    for _ in range(steps):
        losses.append(float(compiled()))
        frames.append(counters["frames"]["total"])
    return losses, frames, [p.detach().clone() for p in model.parameters()]


def _eager(name, steps: int):
    model = _model()
    opt = _optimizer(name, model)
    x, y = _data()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("what", ["model+step", "step"])
@pytest.mark.parametrize("name", ["AdamW", "LAMB", "Muon"])
def test_compiled_step_is_one_break_and_never_recompiles(name, what, warm):
    with torch._dynamo.config.patch(error_on_recompile=True):
        losses, frames, params = _train(name, what, warm)
    # after the first compiled step Dynamo compiles no new frame
    assert frames[1:] == [frames[0]] * (len(frames) - 1), frames
    assert counters["stats"]["unique_graphs"] <= 2
    # the only break the optimizer adds is its step (Dynamo reports "skip inlining"
    # for the hooked wrapper and "skip calling" at its resume: one break, two lines)
    step_reasons = [r for r in counters["graph_break"] if "Optimizer.step" in r]
    assert step_reasons and all("torch.compiler.disable" in r for r in step_reasons)
    assert not counters["unimplemented"]
    # and the compiled run computes what eager runs compute
    expected = _eager(name, len(losses) + (2 if warm else 0))
    for got, want in zip(params, expected):
        torch.testing.assert_close(got, want)


def test_break_count_matches_torch_optim():
    _train("torch.AdamW", "model+step", warm=False)
    theirs = _step_breaks()
    torch._dynamo.reset()
    counters.clear()
    _train("AdamW", "model+step", warm=False)
    assert _step_breaks() == theirs == 2
