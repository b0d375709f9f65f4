"""Yogi matches pytorch-optimizer's Yogi (Zaheer et al. 2018) over 20 steps, on every backend."""
import pytest

from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    dict(),
    dict(lr=3e-2, betas=(0.8, 0.9), eps=1e-4, weight_decay=0.1, weight_decouple=False),
    dict(lr=1e-2, initial_accumulator=0.5, weight_decay=0.1, fixed_decay=True, maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_yogi_matches_pytorch_optimizer(kw, shape, backend):
    check_matches("Yogi", kw, shape, backend, states=("exp_avg", "exp_avg_sq"))


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("Yogi", CONFIGS[1], backend)
