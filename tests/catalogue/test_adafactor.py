"""Adafactor matches torch.optim.Adafactor over 20 steps on every backend (triton under the
interpreter on CPU machines: fewer steps, small shapes), for matrices (factored), vectors
and scalars (unfactored, torch's ``variance``), with weight decay, maximize, ``d`` and
``beta2_decay``; its second moment of a (4096, 4096) weight is 4096 + 4096 float32
values; torch checkpoints load and continue, and ours load into torch. Tolerance: float32
norm-relative 1e-6, as the catalogue's other comparisons with torch.optim.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(),
    dict(lr=0.05, weight_decay=0.1, d=1.5, beta2_decay=-0.5, maximize=True),
    dict(lr=3e-3, eps=(1e-6, 1e-2)),
]


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


@pytest.mark.parametrize("shape", SHAPES + [()], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
def test_adafactor_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.Adafactor(ps, backend=backend, **kw),
        lambda ps: torch.optim.Adafactor(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    if len(shape) == 2:
        for key in ("row_var", "col_var"):
            assert s1[key].shape == s2[key].shape and norm_rel(s1[key], s2[key]) < TOL, key
    else:
        assert norm_rel(s1["row_var"], s2["variance"]) < TOL


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
def test_adafactor_matches_torch_on_triton(shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    kw = CONFIGS[1]
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.Adafactor(ps, backend="triton", **kw),
                                       lambda ps: torch.optim.Adafactor(ps, **kw), shape, steps=6)
    assert norm_rel(ours, ref) < TOL


def test_second_moment_of_a_4096_square_weight_is_rows_plus_cols():
    p = torch.nn.Parameter(torch.zeros(4096, 4096))
    opt = optforge.Adafactor([p], backend="torch")
    p.grad = torch.ones_like(p)
    opt.step()
    state = opt.state[p]
    moments = [state["row_var"], state["col_var"]]
    nbytes = sum(v.untyped_storage().nbytes() for v in moments)
    assert nbytes == (4096 + 4096) * 4  # 32 KiB, not the 64 MiB of a per-element moment
    assert [v.dtype for v in moments] == [torch.float32] * 2
    assert set(state) == {"step", "row_var", "col_var"}


def test_torch_eps_none_is_float32_eps():
    p = torch.nn.Parameter(torch.randn(3, 4))
    opt = optforge.Adafactor([p], eps=(None, 1e-3))
    assert opt.param_groups[0]["eps"] == (torch.finfo(torch.float32).eps, 1e-3)


def test_more_than_two_dimensions_is_refused_before_anything_moves():
    p, q = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(2, 3, 4))
    opt = optforge.Adafactor([p, q], backend="torch")
    before = p.detach().clone()
    p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
    with pytest.raises(ValueError, match=r"parameter 1 of group 0 has shape \(2, 3, 4\)"):
        opt.step()
    assert torch.equal(p, before) and not opt.state


@pytest.mark.parametrize("shape", [(7, 13), (9,)], ids=str)
def test_torch_checkpoint_continues(shape, backend):
    kw = dict(lr=0.05, weight_decay=0.1)
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: torch.optim.Adafactor(ps, **kw),
        lambda ps: optforge.Adafactor(ps, backend=backend),
        lambda ps: torch.optim.Adafactor(ps, **kw), shape=shape)
    assert o2.param_groups[0]["weight_decay"] == 0.1  # from the checkpoint
    assert norm_rel(ours, ref) < TOL


@pytest.mark.parametrize("shape", [(7, 13), (9,)], ids=str)
def test_checkpoint_loads_into_torch(shape):
    ours, ref, _, _ = resumed_vs_uninterrupted(
        lambda ps: optforge.Adafactor(ps, lr=0.05, weight_decay=0.1),
        lambda ps: torch.optim.Adafactor(ps),
        lambda ps: optforge.Adafactor(ps, lr=0.05, weight_decay=0.1), shape=shape)
    assert norm_rel(ours, ref) < TOL


@pytest.mark.parametrize("shape", [(7, 13), (9,)], ids=str)
def test_state_dict_round_trip_is_bitwise(shape, backend):
    make = lambda ps: optforge.Adafactor(ps, lr=0.05, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, shape=shape, before=3,
                                                    after=5)
    assert torch.equal(ours, ref)
    if len(shape) == 2:
        assert states_bitwise_equal(o2, o_ref)
