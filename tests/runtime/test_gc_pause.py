"""The collector is paused during an optimizer's first step only, and always restored."""
import gc

import pytest
import torch

import optforge
from optforge.runtime.gc_pause import gc_paused


def _param():
    p = torch.nn.Parameter(torch.randn(17))
    p.grad = torch.randn(17)
    return p


def test_paused_inside_first_step_only(monkeypatch):
    seen = []
    opt = optforge.AdamW([_param()], lr=1e-3, backend="torch")
    real = opt.step_hyperparameters

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(opt, "step_hyperparameters", spy)
    assert gc.isenabled()
    opt.step()
    assert gc.isenabled()
    opt.step()
    assert seen == [False, True]


def test_closure_runs_with_the_collector_on():
    opt = optforge.AdamW([_param()], lr=1e-3, backend="torch")
    states = []
    opt.step(lambda: states.append(gc.isenabled()) or 0.0)
    assert states == [True] and gc.isenabled()


def test_restored_when_the_step_raises(monkeypatch):
    opt = optforge.AdamW([_param()], lr=1e-3, backend="torch")

    def fail(*args, **kwargs):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(opt, "step_hyperparameters", fail)
    with pytest.raises(RuntimeError, match="kernel failed"):
        opt.step()
    assert gc.isenabled()


def test_a_user_disabled_collector_stays_disabled():
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_closure_run_again_for_inputs_runs_with_the_collector_on():
    """Providers (Hutchinson probes) run the closure again while gathering inputs: that
    forward/backward is user work, outside the first step's pause."""
    model = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)
    opt = optforge.AdaHessian(model.parameters(), lr=0.1, backend="torch")
    seen = []

    def closure():
        seen.append(gc.isenabled())
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()  # no graph kept: the Hutchinson provider runs the closure again
        return loss

    for _ in range(2):
        opt.step(closure)
    assert len(seen) > 2 and all(seen)
