"""AdaBound matches a plain-torch implementation of Luo et al. (2019), Algorithm 2 (written
here from the paper and the official code's bias correction), and pytorch-optimizer's
AdaBound (which adds 1e-15 under the root: below the tolerance at these gradient scales),
over 20 steps on every backend.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2  (AMSBound: v_max <- max(v_max, v))
    eta = clip(lr sqrt(1-b2^t) / (1-b1^t) / (sqrt(v) + eps), final_lr (1 - 1/(gamma t + 1)),
               final_lr (1 + 1/(gamma t)));   p <- p - eta m
Weight decay as pytorch-optimizer (decoupled by default, or added to g).
"""
import math

import pytest
import torch

import optforge
from tests.catalogue.po_reference import TOL, check_round_trip, config_id
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceAdaBound(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, final_lr=0.1, betas=(0.9, 0.999), gamma=1e-3,
                 weight_decay=0.0, weight_decouple=True, ams_bound=False, eps=1e-8):
        super().__init__(params, dict(lr=lr, final_lr=final_lr, betas=betas, gamma=gamma,
                                      weight_decay=weight_decay, weight_decouple=weight_decouple,
                                      ams_bound=ams_bound, eps=eps))
        self.base_lrs = [group["lr"] for group in self.param_groups]  # the official code's

    @torch.no_grad()
    def step(self):
        for group, base_lr in zip(self.param_groups, self.base_lrs):
            (b1, b2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p),
                                 v_max=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                if group["weight_decouple"]:
                    p.mul_(1 - lr * wd)
                else:
                    g = g + wd * p
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                v = state["v"]
                if group["ams_bound"]:
                    torch.maximum(state["v_max"], v, out=state["v_max"])
                    v = state["v_max"]
                step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                final_lr, gamma = group["final_lr"] * lr / base_lr, group["gamma"]
                eta = (step_size / (v.sqrt() + group["eps"])).clamp(
                    final_lr * (1 - 1 / (gamma * t + 1)), final_lr * (1 + 1 / (gamma * t)))
                p.sub_(eta * state["m"])


CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, final_lr=0.1, gamma=0.1),  # both bounds bite within 20 steps
    dict(lr=1e-2, gamma=0.1, ams_bound=True, weight_decay=0.1, weight_decouple=False),
    dict(lr=3e-3, final_lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-6),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_adabound_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.AdaBound(ps, backend=backend, **kw),
                                        lambda ps: ReferenceAdaBound(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL


@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_adabound_matches_pytorch_optimizer(kw):
    po = pytest.importorskip("pytorch_optimizer")
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.AdaBound(ps, **kw),
                                       lambda ps: po.AdaBound(ps, foreach=False, **kw), (257, 129))
    assert norm_rel(ours, ref) < TOL


def _under_step_lr(make_opt, steps=20):
    """20 steps under StepLR (lr halves every 5): the bounds follow lr / initial lr."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(257, generator=gen))
    opt = make_opt([p])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    for _ in range(steps):
        p.grad = torch.randn(257, generator=gen) + p.detach()
        opt.step()
        sched.step()
    return p.detach()


@pytest.mark.parametrize("kw", CONFIGS[:2], ids=config_id)
def test_bounds_follow_a_scheduler(kw, backend):
    ours = _under_step_lr(lambda ps: optforge.AdaBound(ps, backend=backend, **kw))
    ref = _under_step_lr(lambda ps: ReferenceAdaBound(ps, **kw))
    assert norm_rel(ours, ref) < TOL
    po = pytest.importorskip("pytorch_optimizer")
    theirs = _under_step_lr(lambda ps: po.AdaBound(ps, foreach=False, **kw))
    assert norm_rel(ours, theirs) < TOL


def test_the_bounds_are_active():
    # with gamma=0.1 the clip decides the step of most coordinates: without it the run differs
    kw = CONFIGS[1]
    ours, _, _, _ = run_side_by_side(lambda ps: optforge.AdaBound(ps, **kw),
                                     lambda ps: ReferenceAdaBound(ps, **kw), (1023,))
    loose, _, _, _ = run_side_by_side(lambda ps: optforge.AdaBound(ps, **{**kw, "final_lr": 1e-6}),
                                      lambda ps: ReferenceAdaBound(ps, **kw), (1023,))
    assert norm_rel(ours, loose) > 1e-2


def test_state_dict_round_trip_is_bitwise(backend):
    check_round_trip("AdaBound", CONFIGS[2], backend)
