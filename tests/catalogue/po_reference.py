"""Shared body of the catalogue tests whose reference is pytorch-optimizer (3.x/4.x), for
entries that follow its semantics: 20 steps side by side on one parameter (per-parameter
path, ``foreach=False``), then an optforge checkpoint round trip that must be bitwise."""
import pytest
import torch

import optforge
from tests.catalogue.resume import resumed_vs_uninterrupted, states_bitwise_equal
from tests.conftest import norm_rel, run_side_by_side

# float32, norm-relative: the fused kernel rounds in another order than the reference's
# op-by-op float32 kernels, and folds per-step scalars in float64 on the host (~10 ulps)
TOL = 1e-6


def config_id(kw) -> str:
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "default"


def check_matches(name, kw, shape, backend, po_kw=None, states=(), po_name=None):
    """optforge.<name>(**kw) vs pytorch_optimizer.<po_name or name>(**(po_kw or kw)); the
    named states (same keys on both sides) are compared too."""
    po = pytest.importorskip("pytorch_optimizer")
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: getattr(optforge, name)(ps, backend=backend, **kw),
        lambda ps: getattr(po, po_name or name)(ps, foreach=False,
                                                **(kw if po_kw is None else po_kw)),
        shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    for key in states:
        assert norm_rel(s1[key], s2[key]) < TOL, key


def check_round_trip(name, kw, backend):
    make = lambda ps: getattr(optforge, name)(ps, backend=backend, **kw)  # noqa: E731
    ours, ref, o2, o_ref = resumed_vs_uninterrupted(make, make, make, before=3, after=5)
    assert torch.equal(ours, ref) and states_bitwise_equal(o2, o_ref)
