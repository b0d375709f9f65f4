"""AdEMAMix matches pytorch-optimizer's AdEMAMix (Pagliardini et al. 2024) over 20 steps, on
every backend, with and without the alpha/beta3 warmup schedulers (``t_alpha_beta3=0``
here is the reference's ``None``); 20 steps cross t_alpha_beta3=10, so both the warmup
and the capped part of the schedule run."""
import pytest

from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.95, 0.99), alpha=2.0, weight_decay=0.1),
    dict(lr=1e-2, t_alpha_beta3=10.0, weight_decay=0.1, weight_decouple=True, maximize=True),
    dict(lr=1e-2, t_alpha_beta3=30.0, alpha=8.0, betas=(0.9, 0.99, 0.999)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_ademamix_matches_pytorch_optimizer(kw, shape, backend):
    po_kw = {**kw, "t_alpha_beta3": kw.get("t_alpha_beta3") or None}
    check_matches("AdEMAMix", kw, shape, backend, po_kw=po_kw,
                  states=("exp_avg", "exp_avg_sq", "exp_avg_slow"))


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("AdEMAMix", CONFIGS[2], backend)
