"""AdamP vs a plain-torch transcription of Heo et al. (2021), Algorithm 2 / the official
clovaai/AdamP code, and vs pytorch-optimizer's AdamP.

The projection is exercised on purpose: besides the default gradients (correlated with p:
mostly unprojected), "channel" gradients are orthogonal to p row by row (the channel view
applies) and "layer" gradients only as a whole (the channel test fails, the layer view
applies); the reference counts which branch ran and the test checks it.

Like the official code, only tensors with ndim > 1 are projected (an (n, 1) tensor too,
through the layer view). pytorch-optimizer's AdamP (the official code's port) puts eps
elsewhere: sqrt(1 - b2^t) / (sqrt(v) + eps) instead of 1 / (sqrt(v) / sqrt(1 - b2^t) + eps),
so it is compared with eps = 1e-12, where the two forms agree to ~1e-10 (eps also enters
the cosines and p / (||p|| + eps) identically in both).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_optimizer import AdamP as POAdamP

from optforge.catalogue.adamp import AdamP
from tests.conftest import SHAPES, norm_rel, run_side_by_side

CONV = (8, 3, 3, 3)


def official_projection(p, g, u, delta, wd_ratio, eps, counts):
    """The official ``_projection``, channel view then layer view (ndim > 1 only)."""
    if p.dim() <= 1:
        return u, 1.0
    for name, view in (("channel", lambda x: x.reshape(x.shape[0], -1)),
                       ("layer", lambda x: x.reshape(1, -1))):
        cos = F.cosine_similarity(view(g), view(p), dim=1, eps=eps).abs()
        if cos.max() < delta / math.sqrt(view(p).shape[1]):
            shape = [-1] + [1] * (p.dim() - 1)
            p_n = p / view(p).norm(dim=1).view(shape).add(eps)
            counts[name] += 1
            return u - p_n * view(p_n * u).sum(dim=1).view(shape), wd_ratio
    counts["none"] += 1
    return u, 1.0


class RefAdamP(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 delta=0.1, wd_ratio=0.1, nesterov=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      delta=delta, wd_ratio=wd_ratio, nesterov=nesterov))
        self.counts = dict(channel=0, layer=0, none=0)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st, g = self.state[p], p.grad
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = st["v"].sqrt() / math.sqrt(1 - b2 ** st["t"]) + group["eps"]
                u = (b1 * st["m"] + (1 - b1) * g if group["nesterov"] else st["m"]) / denom
                u, ratio = official_projection(p, g, u, group["delta"], group["wd_ratio"],
                                               group["eps"], self.counts)
                p.mul_(1 - group["lr"] * group["weight_decay"] * ratio)
                p.add_(u, alpha=-group["lr"] / (1 - b1 ** st["t"]))


def scale_invariant_grad(mode):
    """Gradients orthogonal to p per row ("channel") or as a whole ("layer")."""
    gen = torch.Generator().manual_seed(7)

    def grad_fn(p, k):
        n = torch.randn(p.shape, generator=gen)
        rows, prow = n.reshape(p.shape[0], -1), p.reshape(p.shape[0], -1)
        if mode == "channel":
            rows = rows - prow * (rows * prow).sum(1, keepdim=True) / prow.square().sum(1, keepdim=True)
        else:
            rows = rows - prow * (rows * prow).sum() / prow.square().sum()
        return rows.reshape(p.shape)
    return None if mode == "default" else grad_fn


MULTI = [s for s in SHAPES if len(s) > 1] + [CONV]
SHAPE_MODES = ([(s, "default") for s in SHAPES if len(s) == 1]
               + [(s, m) for s in MULTI for m in ("default", "channel", "layer")])
CASES = {"decay": dict(lr=1e-2, weight_decay=0.1),
         "nesterov": dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, nesterov=True,
                          delta=0.2, wd_ratio=0.5)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape,mode", SHAPE_MODES, ids=str)
def test_adamp_matches_official(shape, mode, case, backend):
    kw = CASES[case]
    ours, ref, _, ref_opt = run_side_by_side(lambda ps: AdamP(ps, backend=backend, **kw),
                                             lambda ps: RefAdamP(ps, **kw), shape,
                                             grad_fn=scale_invariant_grad(mode))
    assert norm_rel(ours, ref) < 1e-6
    if mode != "default":  # the designed branch ran at every step
        assert ref_opt.counts[mode] == 20


@pytest.mark.parametrize("shape,mode", SHAPE_MODES, ids=str)
def test_adamp_matches_pytorch_optimizer(shape, mode, backend):
    kw = dict(lr=1e-2, weight_decay=0.1, eps=1e-12)
    ours, ref, _, _ = run_side_by_side(lambda ps: AdamP(ps, backend=backend, **kw),
                                       lambda ps: POAdamP(ps, foreach=False, **kw), shape,
                                       grad_fn=scale_invariant_grad(mode))
    assert norm_rel(ours, ref) < 1e-6


def test_projected_step_is_orthogonal_to_each_channel():
    p = torch.nn.Parameter(torch.randn(CONV))
    before = p.detach().clone()
    p.grad = scale_invariant_grad("channel")(before, 0)
    AdamP([p], lr=1e-2).step()
    step = (p.detach() - before).reshape(CONV[0], -1)
    assert (step * before.reshape(CONV[0], -1)).sum(1).abs().max() < 1e-6


def test_n_by_1_tensors_are_projected_like_the_official_code():
    # A (16, 1) tensor has ndim 2: its one-element rows always fail the channel test, the
    # layer view applies, as in the official code (a 1-D (16,) tensor is never projected).
    kw = dict(lr=1e-2, weight_decay=0.1)
    ours, official, _, ref = run_side_by_side(lambda ps: AdamP(ps, **kw),
                                              lambda ps: RefAdamP(ps, **kw), (16, 1),
                                              grad_fn=scale_invariant_grad("layer"))
    assert ref.counts["layer"] == 20 and norm_rel(ours, official) < 1e-6
