"""QHAdam matches pytorch-optimizer's QHAdam (Ma & Yarats 2019, qhoptim's formulation) over
20 steps, on every backend; nus=(1, 1) also equals Adam's direction with bias-corrected
moments, checked against torch.optim.Adam through eps=0."""
import pytest
import torch

import optforge
from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES, norm_rel, run_side_by_side

CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.95), nus=(0.7, 0.9), weight_decay=0.1),
    dict(lr=3e-3, nus=(0.5, 1.0), weight_decay=0.1, weight_decouple=True, maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_qhadam_matches_pytorch_optimizer(kw, shape, backend):
    check_matches("QHAdam", kw, shape, backend, states=("exp_avg", "exp_avg_sq"))


def test_nus_one_is_adam_without_eps():
    # m and v are kept bias-corrected, so with nus = (1, 1) and eps = 0 the step is Adam's
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.QHAdam(ps, lr=1e-2, eps=0.0),
                                       lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=0.0),
                                       (1023,), dtype=torch.float64)
    assert norm_rel(ours, ref) < 1e-12


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("QHAdam", CONFIGS[1], backend)
