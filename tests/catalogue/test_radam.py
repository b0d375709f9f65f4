"""RAdam matches torch.optim.RAdam (foreach=False) over 20 steps, on every backend.

With the default beta2=0.999 the first 5 steps are unrectified (rho_t <= 5: momentum SGD)
and the rest rectified, so both branches of the scalar switch run. Tolerance: float32
norm-relative 1e-6, as tests/catalogue/test_torch_parity.py (different rounding order of
the fused float32 math, host scalars in float64: ~10 ulps).
"""
import pytest
import torch

import optforge
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1, eps=1e-6),
    dict(lr=1e-2, weight_decay=0.3, decoupled_weight_decay=True),
    dict(lr=3e-3, betas=(0.8, 0.9), weight_decay=0.05, decoupled_weight_decay=True,
         maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_radam_matches_torch(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: optforge.RAdam(ps, backend=backend, **kw),
        lambda ps: torch.optim.RAdam(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert s1.keys() == s2.keys()
    for key in ("exp_avg", "exp_avg_sq"):
        assert norm_rel(s1[key], s2[key]) < TOL, key


def test_the_first_steps_are_unrectified():
    # rho_1 = 1 <= 5: the first step is lr * m_hat = lr * g, independent of v
    p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    g = torch.tensor([1e-3, -2.0, 3.0, 1e3, 0.0], dtype=torch.float64)
    p.grad = g.clone()
    optforge.RAdam([p], lr=0.1).step()
    assert torch.allclose(p.detach(), -0.1 * g, rtol=1e-14, atol=0)


@pytest.mark.parametrize("beta2", [0.6, 0.5, 0.0])
def test_never_rectified_betas(beta2, backend):
    # rho_inf <= 5: torch never rectifies, so never computes r_t; here r_t is computed
    # every step and must stay finite (beta2 = 0.6 makes its denominator 0: failed before)
    kw = dict(lr=1e-2, betas=(0.9, beta2))
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.RAdam(ps, backend=backend, **kw),
                                       lambda ps: torch.optim.RAdam(ps, foreach=False, **kw),
                                       (7, 13))
    assert norm_rel(ours, ref) < TOL


def test_torch_checkpoint_continues(backend):
    kw = dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    ours, ref, o2, _ = resumed_vs_uninterrupted(
        lambda ps: torch.optim.RAdam(ps, foreach=False, **kw),
        lambda ps: optforge.RAdam(ps, backend=backend),
        lambda ps: torch.optim.RAdam(ps, foreach=False, **kw))
    assert o2.param_groups[0]["decoupled_weight_decay"] is True  # from the checkpoint
    assert norm_rel(ours, ref) < TOL


def test_checkpoint_loads_into_torch():
    ours, ref, _, _ = resumed_vs_uninterrupted(
        lambda ps: optforge.RAdam(ps, lr=1e-2, weight_decay=0.1),
        lambda ps: torch.optim.RAdam(ps, foreach=False),
        lambda ps: optforge.RAdam(ps, lr=1e-2, weight_decay=0.1))
    assert norm_rel(ours, ref) < TOL


def test_state_dict_round_trip_is_bitwise(backend):
    make = lambda ps: optforge.RAdam(ps, lr=1e-2, backend=backend)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
