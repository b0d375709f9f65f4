"""SGDP vs a plain-torch transcription of Heo et al. (2021), Algorithm 1 / the official
clovaai/AdamP code, and vs pytorch-optimizer's SGDP (a port of it: same conventions, so it
is compared with the same hyperparameters).

Official conventions kept (torch.optim.SGD differs): the buffer starts at zero and is
damped from the first step; the decoupled decay is lr wd wd_ratio / (1 - momentum). The
projection is the one tested in test_adamp.py (same helpers, same gradient modes).
"""
import pytest
import torch
from pytorch_optimizer import SGDP as POSGDP

from optforge.catalogue.sgdp import SGDP
from tests.catalogue.test_adamp import SHAPE_MODES, official_projection, scale_invariant_grad
from tests.conftest import norm_rel, run_side_by_side


class RefSGDP(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, eps=1e-8, delta=0.1, wd_ratio=0.1):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, eps=eps,
                                      delta=delta, wd_ratio=wd_ratio))
        self.counts = dict(channel=0, layer=0, none=0)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mom = group["momentum"]
            for p in group["params"]:
                g = p.grad
                buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                buf.mul_(mom).add_(g, alpha=1 - group["dampening"])
                u = g + mom * buf if group["nesterov"] else buf.clone()
                u, ratio = official_projection(p, g, u, group["delta"], group["wd_ratio"],
                                               group["eps"], self.counts)
                p.mul_(1 - group["lr"] * group["weight_decay"] * ratio / (1 - mom))
                p.add_(u, alpha=-group["lr"])


CASES = {"momentum": dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
         "nesterov": dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=1e-2,
                          nesterov=True, delta=0.2, wd_ratio=0.5)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape,mode", SHAPE_MODES, ids=str)
def test_sgdp_matches_official(shape, mode, case, backend):
    kw = CASES[case]
    ours, ref, _, ref_opt = run_side_by_side(lambda ps: SGDP(ps, backend=backend, **kw),
                                             lambda ps: RefSGDP(ps, **kw), shape,
                                             grad_fn=scale_invariant_grad(mode))
    assert norm_rel(ours, ref) < 1e-6
    if mode != "default":  # the designed branch ran at every step
        assert ref_opt.counts[mode] == 20


@pytest.mark.parametrize("shape,mode", SHAPE_MODES, ids=str)
def test_sgdp_matches_pytorch_optimizer(shape, mode, backend):
    kw = dict(lr=0.1, weight_decay=1e-3)  # momentum 0: the third variant
    ours, ref, opt, _ = run_side_by_side(lambda ps: SGDP(ps, backend=backend, **kw),
                                         lambda ps: POSGDP(ps, foreach=False, **kw), shape,
                                         grad_fn=scale_invariant_grad(mode))
    assert norm_rel(ours, ref) < 1e-6
    assert list(opt.state[opt.param_groups[0]["params"][0]]) == ["step", "momentum"]
