"""AdaMod matches a plain-torch implementation of Ding et al. (2019), Algorithm 1 (written
here from the paper), and pytorch-optimizer's AdaMod, over 20 steps on every backend.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
    eta = lr sqrt(1-b2^t) / (1-b1^t) / (sqrt(v) + eps);  s <- b3 s + (1-b3) eta
    p <- p - min(eta, s) m
Weight decay as pytorch-optimizer (decoupled by default, or added to g).
"""
import math

import pytest
import torch

import optforge
from tests.catalogue.po_reference import TOL, check_round_trip, config_id
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceAdaMod(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99, 0.9999), weight_decay=0.0,
                 weight_decouple=True, eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      weight_decouple=weight_decouple, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2, b3), lr, wd = group["betas"], group["lr"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p),
                                 s=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                if group["weight_decouple"]:
                    p.mul_(1 - lr * wd)
                else:
                    g = g + wd * p
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                eta = lr * math.sqrt(1 - b2**t) / (1 - b1**t) / (state["v"].sqrt() + group["eps"])
                state["s"].mul_(b3).add_(eta, alpha=1 - b3)
                p.sub_(torch.minimum(eta, state["s"]) * state["m"])


CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.9, 0.99, 0.9), weight_decay=0.1),  # a short memory: the cap moves
    dict(lr=3e-3, betas=(0.8, 0.95, 0.99), weight_decay=0.1, weight_decouple=False, eps=1e-6),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_adamod_matches_paper(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(lambda ps: optforge.AdaMod(ps, backend=backend, **kw),
                                         lambda ps: ReferenceAdaMod(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    assert norm_rel(s1["exp_avg_lr"], s2["s"]) < TOL


@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_adamod_matches_pytorch_optimizer(kw):
    po = pytest.importorskip("pytorch_optimizer")
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.AdaMod(ps, **kw),
                                       lambda ps: po.AdaMod(ps, foreach=False, **kw), (257, 129))
    assert norm_rel(ours, ref) < TOL


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("AdaMod", CONFIGS[1], backend)
