"""LAMB vs a plain-torch implementation of You et al. (2020), Algorithm 2 (phi = identity),
and vs pytorch-optimizer's Lamb.

Reference, from the paper: m, v Adam moments; r = m_hat / (sqrt(v_hat) + eps) + wd p;
p <- p - lr ||p|| / ||r|| r (ratio 1 where a norm is 0); no bias correction when
bias_correction=False.

pytorch-optimizer conventions, and the flags set to match ours:
- it bias-corrects only the first moment, through the step size (lr / (1 - b1^t)), unless
  adam_debias=True, which drops it: we compare our bias_correction=False with
  adam_debias=True;
- weight_decouple=True (its default) decays p before the step, outside r and its norm;
  the paper (and we) add wd p to r: weight_decouple=False;
- it clamps ||p|| at 10 (class attribute ``clamp``): set to inf on the instance (phi = z);
- its ratio is ||p|| / (||r|| + eps): not settable. With eps = 1e-6 and ||r|| >= 1 here the
  ratio differs by < 1e-6 relative per step, well below the tolerance after 20 steps of
  size lr ||p||; the Adam eps sits at the same place in both.
"""
import pytest
import torch
from pytorch_optimizer import Lamb as POLamb

from optforge.catalogue.lamb import LAMB
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefLAMB(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                 bias_correction=True, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                g = -p.grad if group["maximize"] else p.grad
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat, v_hat = st["m"], st["v"]
                if group["bias_correction"]:
                    m_hat, v_hat = m_hat / (1 - b1 ** st["t"]), v_hat / (1 - b2 ** st["t"])
                r = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * p
                w_norm, r_norm = p.norm(), r.norm()
                ratio = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
                p.sub_(group["lr"] * ratio * r)


CASES = {"default": dict(lr=1e-2),
         "decay_maximize": dict(lr=2e-2, betas=(0.8, 0.99), weight_decay=0.1, maximize=True),
         "no_bias_correction": dict(lr=1e-2, weight_decay=0.01, bias_correction=False)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lamb_matches_paper(shape, case, backend):
    kw = CASES[case]
    ours, ref, _, _ = run_side_by_side(lambda ps: LAMB(ps, backend=backend, **kw),
                                       lambda ps: RefLAMB(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def _po_lamb(ps, lr, betas, weight_decay, eps):
    opt = POLamb(ps, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps,
                 weight_decouple=False, adam_debias=True, foreach=False)
    opt.clamp = float("inf")
    return opt


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lamb_matches_pytorch_optimizer(shape, backend):
    kw = dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05, eps=1e-6)
    ours, ref, _, _ = run_side_by_side(
        lambda ps: LAMB(ps, backend=backend, bias_correction=False, **kw),
        lambda ps: _po_lamb(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_trust_ratio_makes_the_step_lr_times_the_weight_norm():
    p = torch.nn.Parameter(torch.randn(50, 20))
    before = p.detach().clone()
    p.grad = torch.randn(50, 20)
    LAMB([p], lr=0.1).step()
    assert torch.allclose((p.detach() - before).norm(), 0.1 * before.norm(), rtol=1e-5)


def test_zero_weights_take_an_unscaled_adam_step():
    p = torch.nn.Parameter(torch.zeros(10))
    p.grad = torch.linspace(-1, 1, 10)
    LAMB([p], lr=0.1).step()
    # ||p|| = 0: ratio 1, and the first bias-corrected Adam step is sign(g) (up to eps)
    assert torch.allclose(p.detach(), -0.1 * torch.sign(p.grad), atol=1e-6)
