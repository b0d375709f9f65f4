"""EXAdam matches a plain-torch implementation of Adly (2024), arXiv:2412.20302v1, Algorithm 1.

Written here from the paper, independent of the DSL (state names as in the author's code):
    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
    d1 = 1 + b2^t v / (v + eps);  d2 = 1 + b1^t m^2 / (m^2 + eps)
    m~ = m d1 / (1-b1^t);  v~ = v d2 / (1-b2^t);  g~ = g d1 / (1-b1^t)
    p <- p - lr wd p - lr ln(sqrt(2 (t+1))) (m~ + g~) / (sqrt(v~) + eps)
The decoupled weight decay uses the base lr, as the author's reference code does.
"""
import math

import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class ReferenceEXAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 lr_growth=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      lr_growth=lr_growth))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            eps, lr = group["eps"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                d1 = 1 + v / (v + eps) * b2**t
                d2 = 1 + m * m / (m * m + eps) * b1**t
                m_tilde, g_tilde = m / (1 - b1**t) * d1, g / (1 - b1**t) * d1
                v_tilde = v / (1 - b2**t) * d2
                step_size = lr * math.log(math.sqrt(2 * (t + 1))) if group["lr_growth"] else lr
                p.mul_(1 - lr * group["weight_decay"])
                p.sub_(step_size * (m_tilde + g_tilde) / (v_tilde.sqrt() + eps))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(lr=1e-3), dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.1),
                                dict(lr=1e-2, eps=1e-3, lr_growth=False)],
                         ids=["default", "decay", "v2-no-growth"])
def test_exadam_matches_paper(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.EXAdam(ps, backend=backend, **kw),
                                       lambda ps: ReferenceEXAdam(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_step_size_grows_as_the_paper_says():
    # With gradients that do not depend on p, m and v follow the same path with and
    # without the growth, so step t of the two differ exactly by ln(sqrt(2 (t+1))).
    # float64, because the steps are read back as differences of parameters.
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(1000, generator=gen, dtype=torch.float64) for _ in range(30)]
    params = [torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64)) for _ in range(2)]
    opts = [optforge.EXAdam([params[0]]), optforge.EXAdam([params[1]], lr_growth=False)]
    for t, g in enumerate(grads, start=1):
        before = [p.detach().clone() for p in params]
        for p, opt in zip(params, opts):
            p.grad = g.clone()
            opt.step()
        grown, plain = (p.detach() - b for p, b in zip(params, before))
        assert norm_rel(grown, plain * math.log(math.sqrt(2 * (t + 1)))) < 1e-12


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(lr=1e-3), dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.1)],
                         ids=["default", "decay"])
def test_exadam_without_growth_matches_pytorch_optimizer(kw, shape, backend):
    # pytorch-optimizer implements v2 of the paper (constant lr, no ln(sqrt(2(t+1))) growth)
    # with decoupled decay p (1 - lr wd): our lr_growth=False variant, same conventions
    po = pytest.importorskip("pytorch_optimizer")
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.EXAdam(ps, backend=backend, lr_growth=False, **kw),
        lambda ps: po.EXAdam(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6
