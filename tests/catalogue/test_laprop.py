"""LaProp matches pytorch-optimizer's LaProp (Ziyin et al. 2020) over 20 steps, on every
backend, at a constant lr (the reference's lr-weighted bias correction equals 1 - beta1^t
then; see optforge/catalogue/laprop.py), plain, centered (switching on inside the 20
steps) and with ams_bound."""
import pytest

from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1),
    dict(lr=1e-2, centered=True, ams_bound=True, weight_decay=0.1, fixed_decay=True),
    dict(lr=3e-3, centered=True, steps_before_using_centered=3, betas=(0.5, 0.9),
         maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_laprop_matches_pytorch_optimizer(kw, shape, backend):
    states = ("exp_avg", "exp_avg_sq") + (("exp_mean_avg_beta2",) if kw.get("centered") else ()) \
        + (("max_exp_avg_sq",) if kw.get("ams_bound") else ())
    check_matches("LaProp", kw, shape, backend, states=states)


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("LaProp", CONFIGS[2], backend)
