"""Each classic optimizer matches torch.optim (foreach=False) over 20 steps, on every backend.

Tolerance: norm-relative 1e-6 on the parameters in float32. The two sides round
differently (optforge folds scalars in float64 on the host and fuses; torch applies
ops one at a time), so bitwise equality is not expected; 1e-6 is ~10 float32 ulps.
"""
import itertools

import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6


def _sgd_configs():
    for momentum, dampening, nesterov, wd, maximize in itertools.product(
            (0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 0.1), (False, True)):
        if nesterov and (momentum == 0 or dampening != 0):
            continue  # torch.optim.SGD rejects these combinations
        yield dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                   weight_decay=wd, maximize=maximize)


CONFIGS = [("SGD", c) for c in _sgd_configs()] + [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-6)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=1e-2, amsgrad=True, maximize=True, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.3, betas=(0.85, 0.99))),
    ("AdamW", dict(lr=1e-2, amsgrad=True, maximize=True)),
    ("Adamax", dict(lr=1e-2)),
    ("Adamax", dict(lr=1e-2, weight_decay=0.1, betas=(0.7, 0.9), maximize=True)),
    ("Adagrad", dict(lr=1e-1)),
    ("Adagrad", dict(lr=1e-1, lr_decay=0.01, weight_decay=0.1,
                     initial_accumulator_value=0.2, maximize=True)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=1e-2, centered=True, alpha=0.9)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.5, maximize=True)),
]


def _id(cfg):
    name, kw = cfg
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_matches_torch_optim(cfg, shape, backend):
    name, kw = cfg
    ours, ref, o1, o2 = run_side_by_side(
        lambda ps: getattr(optforge, name)(ps, backend=backend, **kw),
        lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw),
        shape)
    assert norm_rel(ours, ref) < TOL
    # The states torch keeps under the same names agree too. A state is a running
    # sum of gradients, so its rounding error scales with the gradients, not with
    # its own (possibly cancelled, near-zero) value: measure it against both.
    p1, p2 = o1.param_groups[0]["params"][0], o2.param_groups[0]["params"][0]
    for key, value in o2.state[p2].items():
        if isinstance(value, torch.Tensor) and value.shape == p2.shape:
            scale = max(value.double().norm().item(), p2.grad.double().norm().item())
            err = (o1.state[p1][key].double() - value.double()).norm().item() / scale
            assert err < TOL, key


def test_sgd_without_momentum_keeps_no_buffer():
    p = torch.nn.Parameter(torch.ones(3))
    opt = optforge.SGD([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[p]) == {"step"}
    assert torch.equal(p.detach(), torch.full((3,), 0.9))
