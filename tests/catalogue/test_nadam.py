"""NAdam matches torch.optim.NAdam (foreach=False) over 20 steps on every backend (triton
under the interpreter on CPU machines, fewer steps), with decoupled weight decay, momentum
decay and maximize; ``mu_product`` is a per-tensor scoped state kept as torch keeps it (a
0-d float32 tensor), so checkpoints load both ways and continue. Tolerance: float32
norm-relative 1e-6, as tests/catalogue/test_radam.py.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import NATIVE_BACKENDS, SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1, eps=1e-6, momentum_decay=1e-2),
    dict(lr=1e-2, weight_decay=0.3, decoupled_weight_decay=True),
    dict(lr=3e-3, betas=(0.8, 0.9), weight_decay=0.05, decoupled_weight_decay=True,
         maximize=True),
]
ALL_BACKENDS = NATIVE_BACKENDS + (["triton"] if "triton" in BACKENDS else [])


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("shape", SHAPES + [(3, 4, 5)], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
def test_nadam_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.NAdam(ps, backend=backend, **kw),
        lambda ps: torch.optim.NAdam(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert s1.keys() == s2.keys()
    for key in ("exp_avg", "exp_avg_sq"):
        assert norm_rel(s1[key], s2[key]) < TOL, key
    assert s1["mu_product"].shape == () and s1["mu_product"].dtype == torch.float32
    assert torch.equal(s1["mu_product"], s2["mu_product"])  # the same float32 products


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("kw", CONFIGS[2:], ids=_name)
def test_nadam_matches_torch_on_triton(kw):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.NAdam(ps, backend="triton", **kw),
        lambda ps: torch.optim.NAdam(ps, foreach=False, **kw), (7, 13), steps=8)
    assert norm_rel(ours.cpu(), ref) < TOL


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_torch_checkpoint_continues(backend):
    if backend == "triton" and DEVICE.type != "cpu":
        pytest.skip("the resume helper steps CPU tensors")
    kw = dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: torch.optim.NAdam(ps, foreach=False, **kw),
        lambda ps: optforge.NAdam(ps, backend=backend),
        lambda ps: torch.optim.NAdam(ps, foreach=False, **kw),
        before=10, after=10 if backend != "triton" else 3)
    assert o2.param_groups[0]["decoupled_weight_decay"] is True  # from the checkpoint
    assert norm_rel(ours, ref) < TOL


def test_checkpoint_loads_into_torch():
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: optforge.NAdam(ps, lr=1e-2, weight_decay=0.1),
        lambda ps: torch.optim.NAdam(ps, foreach=False),
        lambda ps: optforge.NAdam(ps, lr=1e-2, weight_decay=0.1))
    assert norm_rel(ours, ref) < TOL
    (state,) = o2.state.values()
    assert state["mu_product"].shape == ()


def test_state_dict_round_trip_is_bitwise(backend):
    make = lambda ps: optforge.NAdam(ps, lr=1e-2, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
