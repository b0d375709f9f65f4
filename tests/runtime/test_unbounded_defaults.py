"""Hyperparameters that default to an infinity (a clipping threshold that is off) or to
None ("off" unless set): structural, so the kernels never see inf or None (issue 15)."""
import math

import pytest
import torch

import optforge
from optforge.dsl import Rule, RuleSpec, clamp, grad, norm, param, where
from tests.conftest import norm_rel


def clipped_sgd(lr=0.1, max_update=math.inf, max_norm=float("inf")):
    """SGD with an elementwise clip of the step and a clip of the gradient's norm."""
    p, g = param(), grad()
    g = where(norm(g) > max_norm, g * max_norm / norm(g), g)
    return Rule(p - clamp(lr * g, -max_update, max_update))


def sgd_optional_decay(lr=0.1, weight_decay=None):
    p, g = param(), grad()
    if weight_decay is not None:
        g = g + weight_decay * p
    return Rule(p - lr * g)


def _steps(opt, p, grads):
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def _reference_clip(start, grads, lr=0.1, max_update=math.inf, max_norm=math.inf):
    p = start.double().clone()
    for g in grads:
        g = g.double()
        if g.norm() > max_norm:
            g = g * max_norm / g.norm()
        p = p - (lr * g).clamp(-max_update, max_update)
    return p


@pytest.mark.parametrize("hyper", [{}, {"max_update": 0.05}, {"max_norm": 2.0},
                                   {"max_update": 0.05, "max_norm": 2.0}], ids=str)
def test_infinite_defaults_mean_no_clipping(hyper, backend):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(300, generator=gen)
    grads = [torch.randn(300, generator=gen) for _ in range(5)]
    p = torch.nn.Parameter(start.clone())
    ours = _steps(optforge.Optimizer([p], clipped_sgd, backend=backend, **hyper), p, grads)
    assert norm_rel(ours, _reference_clip(start, grads, **hyper)) < 1e-6


def test_infinite_values_compile_away():
    spec = RuleSpec(clipped_sgd)
    off = spec.build(spec.variant_of(spec.defaults))
    assert str(off.param) == "-g*lr + p"  # no clip, no norm: an elementwise rule
    group = {**spec.defaults, "max_update": 0.5}
    assert spec.variant_of(group) != spec.variant_of(spec.defaults)
    # the kernels' scalars are finite: the stand-in for an infinity is never read
    assert all(math.isfinite(v) for v in spec.hyper_values(spec.defaults).values())


def test_none_means_off_and_a_value_turns_it_on(backend):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(50, generator=gen)
    grads = [torch.randn(50, generator=gen) for _ in range(4)]
    p = torch.nn.Parameter(start.clone())
    opt = optforge.Optimizer([p], sgd_optional_decay, backend=backend)
    assert opt.param_groups[0]["weight_decay"] is None
    ours = _steps(opt, p, grads[:2])
    q = torch.nn.Parameter(start.clone())
    ref = _steps(torch.optim.SGD([q], lr=0.1), q, grads[:2])
    assert norm_rel(ours, ref) < 1e-6
    opt.param_groups[0]["weight_decay"] = 0.3  # another variant, compiled on demand
    ref_opt = torch.optim.SGD([q], lr=0.1, weight_decay=0.3)
    assert norm_rel(_steps(opt, p, grads[2:]), _steps(ref_opt, q, grads[2:])) < 1e-6


def test_bad_values_are_refused_naming_them():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"'max_norm' = nan in defaults: expected a number "
                                         r"\(infinities allowed\)"):
        optforge.Optimizer([p], clipped_sgd, max_norm=float("nan"))
    with pytest.raises(ValueError, match="'weight_decay' = 'x' in defaults: expected None or "
                                         "a finite number"):
        optforge.Optimizer([p], sgd_optional_decay, weight_decay="x")
    with pytest.raises(ValueError, match="'lr' = inf in defaults: expected a finite number"):
        optforge.Optimizer([p], clipped_sgd, lr=math.inf)
