"""with_ema(rule): the weight average is updated in the same step; swap_ema evaluates with it."""
import pytest
import torch

import optforge
from optforge.catalogue.adamw import adamw
from optforge.catalogue.sgd import sgd
from optforge.dsl import DSLError, RuleSpec, with_ema
from tests.conftest import SHAPES, norm_rel


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ema_of_adamw_weights_matches_reference(shape, backend):
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen))
    q = torch.nn.Parameter(p.detach().clone())
    opt = optforge.Optimizer([p], with_ema(adamw, decay=0.9), lr=1e-2, backend=backend)
    ref = torch.optim.AdamW([q], lr=1e-2, foreach=False)
    average = q.detach().clone()
    for _ in range(20):
        g = torch.randn(shape, generator=gen)
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
        average = 0.9 * average + 0.1 * q.detach()
    assert norm_rel(p.detach(), q.detach()) < 1e-6
    assert norm_rel(opt.state[p]["param_ema"], average) < 1e-6


def test_signature_and_variants_carry_over():
    spec = RuleSpec(with_ema(sgd))
    assert spec.name == "sgd_with_ema" and spec.defaults["ema_decay"] == 0.999
    assert "momentum_buffer" not in spec.build().states  # momentum=0 still specialised
    with pytest.raises(DSLError, match="already has a hyperparameter 'ema_decay'"):
        with_ema(with_ema(sgd))


def test_swap_ema_restores_the_trained_weights_even_on_error():
    p = torch.nn.Parameter(torch.zeros(5))
    opt = optforge.Optimizer([p], with_ema(sgd, decay=0.5), lr=1.0)
    p.grad = torch.ones(5)
    opt.step()  # p = -1, ema = 0.5 * 0 + 0.5 * -1
    with optforge.swap_ema(opt):
        assert torch.equal(p.detach(), torch.full((5,), -0.5))
    assert torch.equal(p.detach(), torch.full((5,), -1.0))
    with pytest.raises(ZeroDivisionError):
        with optforge.swap_ema(opt):
            1 / 0
    assert torch.equal(p.detach(), torch.full((5,), -1.0))


def test_swap_ema_without_an_average_is_a_clear_error():
    p = torch.nn.Parameter(torch.zeros(5))
    opt = optforge.SGD([p], lr=1.0)
    with pytest.raises(RuntimeError, match="no parameter has a 'param_ema' state"):
        with optforge.swap_ema(opt):
            pass
