"""AdaBelief matches pytorch-optimizer's AdaBelief (Zhuang et al. 2020) over 20 steps, on
every backend, plain, with ams_bound and with the rectifier (with the default beta2 the
first 5 steps are unrectified momentum SGD and the rest rectified: both branches run)."""
import pytest

from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-12, weight_decay=0.1, weight_decouple=False),
    dict(lr=1e-2, ams_bound=True, weight_decay=0.1, fixed_decay=True),
    dict(lr=1e-2, rectify=True, maximize=True),
    dict(lr=1e-2, rectify=True, ams_bound=True, betas=(0.9, 0.99), weight_decay=0.1),
    # n_sma_max = 4: never rectified, and the unused rectifier's denominator is 0
    dict(lr=1e-2, rectify=True, betas=(0.9, 0.6)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_adabelief_matches_pytorch_optimizer(kw, shape, backend):
    states = ("exp_avg", "exp_avg_var") + (("max_exp_avg_var",) if kw.get("ams_bound") else ())
    check_matches("AdaBelief", kw, shape, backend, states=states)


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("AdaBelief", CONFIGS[4], backend)
