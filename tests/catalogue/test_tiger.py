"""Tiger matches pytorch-optimizer's Tiger (Su 2023) over 20 steps, on every backend.

The step is lr * sign(m): both sides compute m with the same lerp and decay, so the
parameters agree to rounding (in practice exactly); the tolerance is the shared 1e-6."""
import pytest
import torch

import optforge
from tests.catalogue.po_reference import check_matches, check_round_trip, config_id
from tests.conftest import SHAPES

CONFIGS = [
    dict(),
    dict(lr=1e-2, beta=0.9, weight_decay=0.1, fixed_decay=True),
    dict(lr=1e-2, beta=0.5, weight_decay=0.05, weight_decouple=False, maximize=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_tiger_matches_pytorch_optimizer(kw, shape, backend):
    check_matches("Tiger", kw, shape, backend, states=("exp_avg",))


def test_every_coordinate_moves_by_lr():
    p = torch.nn.Parameter(torch.zeros(100))
    opt = optforge.Tiger([p], lr=0.01, weight_decay=0.0)
    p.grad = torch.randn(100) + 0.1
    opt.step()
    assert torch.allclose(p.detach().abs(), torch.full((100,), 0.01))


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("Tiger", CONFIGS[1], backend)
