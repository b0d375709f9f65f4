"""Cautious optimizers vs plain-torch implementations of the paper's C-AdamW and C-Lion,
and vs pytorch-optimizer's cautious Lion.

Convention (official C-Optim code, pytorch-optimizer ``apply_cautious``): the mask
``u * g > 0`` is rescaled by ``numel / (mask.sum() + 1)``; weight decay is decoupled and
unmasked. Rules with reductions run on the torch backend (``auto`` picks it).
"""
import pytest
import torch
from pytorch_optimizer import Lion as POLion

import optforge
from optforge.catalogue.cautious import CAdamW, CLion
from optforge.compiler import lower, traffic
from optforge.dsl import (RuleSpec, add_decayed_weights, cautious, chain, clip_by_global_norm,
                          scale_by_adam, scale_by_lr)
from optforge.catalogue.sgd import sgd
from tests.conftest import SHAPES, norm_rel, run_side_by_side


def _mask(u, g):
    mask = (u * g > 0).to(g.dtype)
    return mask * (mask.numel() / (mask.sum() + 1))


class RefCAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                g = p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                st["m"].lerp_(g, 1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = st["v"].sqrt() / (1 - b2 ** st["t"]) ** 0.5 + group["eps"]
                p.add_(st["m"] * _mask(st["m"], g) / denom,
                       alpha=-group["lr"] / (1 - b1 ** st["t"]))


class RefCLion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                g = p.grad
                update = (b1 * m + (1 - b1) * g).sign()
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update * _mask(update, g), alpha=-group["lr"])
                m.mul_(b2).add_(g, alpha=1 - b2)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cadamw_matches_reference(shape, backend):
    kw = dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.95))
    ours, ref, _, _ = run_side_by_side(lambda ps: CAdamW(ps, backend=backend, **kw),
                                       lambda ps: RefCAdamW(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_clion_matches_reference_and_pytorch_optimizer(shape, backend):
    kw = dict(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    ours, ref, _, _ = run_side_by_side(lambda ps: CLion(ps, backend=backend, **kw),
                                       lambda ps: RefCLion(ps, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6
    ours, ref, _, _ = run_side_by_side(
        lambda ps: CLion(ps, backend=backend, **kw),
        lambda ps: POLion(ps, cautious=True, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_the_mask_only_keeps_agreeing_coordinates():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = CLion([p], lr=1.0, betas=(0.9, 0.0))  # the momentum becomes the last gradient
    p.grad = torch.tensor([1.0, -2.0, 0.0, 3.0])
    opt.step()
    # update sign(0.1 g) agrees with g where g != 0: 3 kept, rescaled by 4 / (3 + 1) = 1
    assert torch.equal(p.detach(), torch.tensor([-1.0, 1.0, 0.0, -1.0]))
    p.grad = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    opt.step()
    # update sign(0.9 m + 0.1 g) = [1, -1, 1, 1]: the first coordinate disagrees with g
    assert torch.equal(p.detach(), torch.tensor([-1.0, 2.0, -1.0, -2.0]))


def test_cautious_transform_in_a_chain_is_cadamw():
    chained = chain(scale_by_adam(), cautious(), add_decayed_weights(), scale_by_lr(),
                    name="chained_cadamw")
    spec, hand = RuleSpec(chained), CAdamW.rule
    ours = lower(spec.build(spec.variant_of(spec.defaults)), spec.hyper_symbols)
    theirs = lower(hand.build(), hand.hyper_symbols)
    assert len(ours.reduce_stages) == len(theirs.reduce_stages) == 1
    assert traffic(ours) == traffic(theirs)
    kw = dict(lr=1e-2, weight_decay=0.1)
    a, b, _, _ = run_side_by_side(lambda ps: optforge.Optimizer(ps, chained, **kw),
                                  lambda ps: RefCAdamW(ps, **kw), (257, 129))
    assert norm_rel(a, b) < 1e-6


def test_cautious_wraps_any_rule():
    """cautious(sgd) with momentum: the whole step masked against the gradient."""
    class RefCautiousSGD(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.05))

        @torch.no_grad()
        def step(self):
            for p in self.param_groups[0]["params"]:
                st = self.state[p]
                buf = st["buf"] = p.grad.clone() if "buf" not in st else \
                    st["buf"].mul_(0.9).add_(p.grad)
                p.sub_(0.05 * buf * _mask(0.05 * buf, p.grad))

    rule = cautious(sgd)
    assert RuleSpec(rule).name == "cautious_sgd"
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, rule, lr=0.05, momentum=0.9),
        lambda ps: RefCautiousSGD(ps), (1023,))
    assert norm_rel(ours, ref) < 1e-6


def test_clip_by_global_norm_then_adamw_is_torch_clip_plus_adamw():
    clipped = chain(clip_by_global_norm(max_norm=0.5), scale_by_adam(), add_decayed_weights(),
                    scale_by_lr(lr=1e-2))
    gen = torch.Generator().manual_seed(4)
    shapes = [(7, 13), (1,), (257, 129)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = optforge.Optimizer(ours, clipped)
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, foreach=False)
    for _ in range(10):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref, 0.5, foreach=False)
        ref_opt.step()
    for p, q in zip(ours, ref):
        assert norm_rel(p.detach(), q.detach()) < 1e-6
