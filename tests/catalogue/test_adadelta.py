"""Adadelta matches torch.optim.Adadelta (foreach=False) over 20 steps, on every backend.

Tolerance: float32 norm-relative 1e-6, as tests/catalogue/test_torch_parity.py (the fused
float32 math rounds in another order than torch's op-by-op kernels: ~10 ulps).
"""
import pytest
import torch

import optforge
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(),
    dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.1),
    dict(lr=2.0, rho=0.5, weight_decay=0.01, maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())
                         or "default")
def test_adadelta_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Adadelta(ps, backend=backend, **kw),
        lambda ps: torch.optim.Adadelta(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert s1.keys() == s2.keys()
    for key in ("square_avg", "acc_delta"):
        assert norm_rel(s1[key], s2[key]) < TOL, key


def test_torch_checkpoint_continues(backend):
    kw = dict(lr=0.5, rho=0.8, weight_decay=0.1)
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: torch.optim.Adadelta(ps, foreach=False, **kw),
        lambda ps: optforge.Adadelta(ps, backend=backend),
        lambda ps: torch.optim.Adadelta(ps, foreach=False, **kw))
    assert o2.param_groups[0]["rho"] == 0.8  # from the checkpoint
    assert norm_rel(ours, ref) < TOL


def test_checkpoint_loads_into_torch():
    ours, ref, _, _ = resumed_vs_uninterrupted(
        lambda ps: optforge.Adadelta(ps, rho=0.8),
        lambda ps: torch.optim.Adadelta(ps, foreach=False),
        lambda ps: optforge.Adadelta(ps, rho=0.8))
    assert norm_rel(ours, ref) < TOL


def test_state_dict_round_trip_is_bitwise(backend):
    make = lambda ps: optforge.Adadelta(ps, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
