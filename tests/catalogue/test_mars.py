"""MARS (AdamW and Lion types) matches pytorch-optimizer's MARS with optimize_1d=True (MARS on
every tensor, as ours) over 20 steps, on every backend. The per-tensor clip of c_t to unit
norm is active in these runs (the gradients' norms are ~sqrt(numel) > 1)."""
import pytest

from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    ("MARS", dict()),
    ("MARS", dict(lr=1e-2, betas=(0.9, 0.95), gamma=0.1, weight_decay=0.1, ams_bound=True)),
    ("MARS", dict(lr=1e-2, eps=1e-6, weight_decay=0.1, fixed_decay=True, maximize=True)),
    ("MARSLion", dict(lr=1e-3, weight_decay=0.1)),
    ("MARSLion", dict(lr=1e-3, betas=(0.8, 0.99), gamma=0.1, maximize=True)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c[0] + "-" + config_id(c[1]))
def test_mars_matches_pytorch_optimizer(cfg, shape, backend):
    name, kw = cfg
    po_kw = dict(kw, optimize_1d=True, mars_type="lion" if name == "MARSLion" else "adamw")
    states = ("exp_avg", "last_grad") + (("exp_avg_sq",) if name == "MARS" else ()) \
        + (("max_exp_avg_sq",) if kw.get("ams_bound") else ())
    check_matches(name, kw, shape, backend, po_kw=po_kw, states=states, po_name="MARS")


@pytest.mark.parametrize("name", ["MARS", "MARSLion"])
def test_state_dict_round_trip_is_bitwise(name, backend):
    check_round_trip(name, dict(lr=1e-2, weight_decay=0.1), backend)
