"""ASGD matches torch.optim.ASGD (foreach=False) over 20 steps, on every backend: the
parameter and the averaged iterate ``ax``, with averaging off (t0 = 1e6: ax copies p),
starting inside the run (t0 = 5, 12.5) and from the start (t0 = 0).

Tolerance: float32 norm-relative 1e-6, as tests/catalogue/test_torch_parity.py. torch
keeps eta as a float32 0-d tensor; here it is a host scalar rounded to float32 on the
way into the kernel, the same value.
"""
import pytest
import torch

import optforge
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(),
    dict(lr=0.05, lambd=0.1, alpha=0.5, t0=5.0, weight_decay=0.1),
    dict(lr=0.05, t0=0.0, maximize=True),
    dict(lr=0.05, lambd=0.01, t0=12.5),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())
                         or "default")
def test_asgd_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.ASGD(ps, backend=backend, **kw),
        lambda ps: torch.optim.ASGD(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert norm_rel(s1["ax"], s2["ax"]) < TOL


def test_ax_copies_the_parameter_before_t0():
    p = torch.nn.Parameter(torch.randn(1023))
    opt = optforge.ASGD([p], lr=0.05, t0=100.0)
    for _ in range(3):
        p.grad = torch.randn(1023)
        opt.step()
    assert torch.equal(opt.state[p]["ax"], p.detach())


def test_torch_checkpoint_continues(backend):
    # torch's eta and mu entries are ignored on load: the step gives the same values
    kw = dict(lr=0.05, lambd=0.1, t0=5.0)
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(
        lambda ps: torch.optim.ASGD(ps, foreach=False, **kw),
        lambda ps: optforge.ASGD(ps, backend=backend),
        lambda ps: torch.optim.ASGD(ps, foreach=False, **kw))
    assert o2.param_groups[0]["t0"] == 5.0  # from the checkpoint
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o2.state.values(), o_ref.state.values()
    assert norm_rel(s1["ax"], s2["ax"]) < TOL


def test_state_dict_round_trip_is_bitwise(backend):
    make = lambda ps: optforge.ASGD(ps, lr=0.05, t0=2.0, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
