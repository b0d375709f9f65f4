"""Rprop matches torch.optim.Rprop (foreach=False) over 20 steps, on every backend.

The gradients are noise plus a pull (tests/conftest.py), so signs flip often: growth,
shrinkage, the zeroed gradient after a flip and both clamps all run. Tolerance: float32
norm-relative 1e-6 on the parameters (same float32 products and sign tests as torch; the
rest is step-size products, ~ulps). The step sizes are exact products of etas, clamped:
compared at the same tolerance.
"""
import pytest
import torch

import optforge
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(),
    dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.1)),  # both clamps are hit
    dict(lr=1e-3, etas=(0.7, 1.1), step_sizes=(1e-4, 2e-3), maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())
                         or "default")
def test_rprop_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Rprop(ps, backend=backend, **kw),
        lambda ps: torch.optim.Rprop(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert s1.keys() == s2.keys()
    assert torch.equal(s1["prev"], s2["prev"])  # the gradient itself, or 0 after a flip
    assert norm_rel(s1["step_size"], s2["step_size"]) < TOL


def test_step_sizes_hit_both_clamps():
    # the second config's run really reaches both bounds (else it would not test them)
    _, _, o1, _ = run_side_by_side(
        lambda ps: optforge.Rprop(ps, **CONFIGS[1]), lambda ps: torch.optim.Rprop(ps, **CONFIGS[1]),
        (1023,))
    (s1,) = o1.state.values()
    assert (s1["step_size"] == 1e-3).any() and (s1["step_size"] == torch.tensor(0.1)).any()


def test_torch_checkpoint_continues(backend):
    kw = dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.1))
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: torch.optim.Rprop(ps, foreach=False, **kw),
        lambda ps: optforge.Rprop(ps, backend=backend),
        lambda ps: torch.optim.Rprop(ps, foreach=False, **kw))
    assert tuple(o2.param_groups[0]["etas"]) == (0.3, 1.5)  # from the checkpoint
    assert norm_rel(ours, ref) < TOL


def test_checkpoint_loads_into_torch():
    ours, ref, _, _ = resumed_vs_uninterrupted(
        lambda ps: optforge.Rprop(ps, lr=0.05),
        lambda ps: torch.optim.Rprop(ps, foreach=False),
        lambda ps: optforge.Rprop(ps, lr=0.05))
    assert norm_rel(ours, ref) < TOL


def test_state_dict_round_trip_is_bitwise(backend):
    make = lambda ps: optforge.Rprop(ps, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
