"""chain(...) of transforms is one rule: the same plan as the hand-written rule, same numbers."""
import pytest
import torch

import optforge
from optforge.compiler import lower, traffic
from optforge.dsl import (DSLError, RuleSpec, Transform, add_decayed_weights, chain,
                          scale_by_adam, scale_by_lr, scale_by_rms, scale_by_sign,
                          state, trace)
from optforge.catalogue.adamw import adamw
from tests.conftest import SHAPES, norm_rel, run_side_by_side

CHAINED_ADAMW = chain(scale_by_adam(), add_decayed_weights(), scale_by_lr(), name="chained_adamw")


def _plan(fn, **flags):
    spec = RuleSpec(fn)
    return lower(spec.build(spec.variant_of({**spec.defaults, **flags})), spec.hyper_symbols)


def test_chain_signature_lists_every_hyperparameter():
    spec = RuleSpec(CHAINED_ADAMW)
    assert spec.name == "chained_adamw"
    assert spec.defaults == {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False,
                             "weight_decay": 1e-2, "lr": 1e-3}
    assert spec.static == ["amsgrad"]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_chained_adamw_compiles_to_the_hand_written_plan(amsgrad):
    ours, hand = _plan(CHAINED_ADAMW, amsgrad=amsgrad), _plan(adamw, amsgrad=amsgrad)
    assert [r.name for r in ours.loads] == [r.name for r in hand.loads]
    assert [r.name for r, _ in ours.stores] == [r.name for r, _ in hand.stores]
    assert traffic(ours) == traffic(hand)
    assert len(ours.temps) == len(hand.temps)  # one fused stage of the same shape


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_chained_adamw_matches_adamw(shape, backend):
    kw = dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.95))
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, CHAINED_ADAMW, backend=backend, **kw),
        lambda ps: torch.optim.AdamW(ps, foreach=False, **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


@pytest.mark.parametrize("nesterov", [False, True])
def test_trace_then_lr_is_torch_sgd_momentum(nesterov, backend):
    make = chain(trace(momentum=0.9, nesterov=nesterov), scale_by_lr(lr=0.05))
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, make, backend=backend),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=nesterov,
                                   foreach=False), (257, 129))
    assert norm_rel(ours, ref) < 1e-6


def test_rms_then_lr_is_torch_rmsprop(backend):
    make = chain(scale_by_rms(alpha=0.9, eps=1e-6), scale_by_lr(lr=1e-2))
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, make, backend=backend),
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-6, foreach=False),
        (1023,))
    assert norm_rel(ours, ref) < 1e-6


def test_sign_then_lr_is_signsgd(backend):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = optforge.Optimizer([p], chain(scale_by_sign(), scale_by_lr(lr=0.5)), backend=backend)
    p.grad = torch.tensor([0.3, -7.0, 0.0])
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([0.5, -1.5, 3.0]))


def test_chained_hyperparameters_are_param_group_keys():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = optforge.Optimizer([p], CHAINED_ADAMW, lr=0.5)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["weight_decay"] == 1e-2


def test_chain_rejects_a_hyperparameter_claimed_twice():
    with pytest.raises(DSLError, match="'lr' is claimed by both scale_by_lr and scale_by_lr"):
        chain(scale_by_lr(), scale_by_lr())


def test_chain_rejects_an_uncalled_transform():
    with pytest.raises(DSLError, match="did you forget to call it"):
        chain(scale_by_adam, scale_by_lr())


def test_chain_rejects_two_transforms_writing_one_state():
    def apply(u, h, writes):
        writes["exp_avg"] = state("exp_avg") + u
        return u
    other = Transform("my_ema", {}, apply)
    with pytest.raises(DSLError, match=r"my_ema writes state\(s\) \['exp_avg'\]"):
        RuleSpec(chain(scale_by_adam(), other, scale_by_lr())).build()


def test_empty_chain_is_an_error():
    with pytest.raises(DSLError, match="at least one transform"):
        chain()
