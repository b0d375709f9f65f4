"""skip_nonfinite=True: a group with a NaN/Inf gradient skips its step, untouched."""
import math

import pytest
import torch

import optforge
from optforge.compiler import traffic
from optforge.runtime.compiled import compile_rule
from tests.conftest import norm_rel


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(7, 13), (1023,)]]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nonfinite_gradient_skips_the_group_and_counts(bad):
    ours, ref = _params(), _params()
    opt = optforge.AdamW(ours, lr=1e-2, skip_nonfinite=True)
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for k in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        if k == 2:  # one poisoned element in one tensor: the whole group must skip
            grads[1][17] = bad
            before = [p.detach().clone() for p in ours]
            states = [{k: v.clone() for k, v in opt.state[p].items()} for p in ours]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        opt.step()
        if k == 2:
            for p, b, st in zip(ours, before, states):
                assert torch.equal(p.detach(), b)
                for key, value in st.items():
                    assert torch.equal(opt.state[p][key], value), key
            continue
        for q, g in zip(ref, grads):
            q.grad = g.clone()
        ref_opt.step()
    assert opt.param_groups[0]["nonfinite_skips"] == 1
    assert float(opt.state[ours[0]]["step"]) == 5
    for p, q in zip(ours, ref):
        assert norm_rel(p.detach(), q.detach()) < 1e-6


def test_only_the_poisoned_group_skips():
    a, b = _params()
    opt = optforge.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, skip_nonfinite=True)
    a0, b0 = a.detach().clone(), b.detach().clone()
    a.grad, b.grad = torch.ones_like(a), torch.full_like(b, math.nan)
    opt.step()
    assert torch.allclose(a.detach(), a0 - 0.1) and torch.equal(b.detach(), b0)
    assert [g["nonfinite_skips"] for g in opt.param_groups] == [0, 1]


def test_without_the_guard_nan_propagates_like_torch():
    (p,) = _params()[:1]
    opt = optforge.SGD([p], lr=0.1)
    p.grad = torch.full_like(p, math.nan)
    opt.step()
    assert torch.isnan(p.detach()).all() and "nonfinite_skips" not in opt.param_groups[0]


def test_the_guard_is_one_extra_read_of_the_gradient():
    spec = optforge.AdamW.rule
    guarded = compile_rule(spec, spec.default_variant, True).plan
    plain = compile_rule(spec, spec.default_variant, False).plan
    assert traffic(plain).total == 28 and traffic(guarded).total == 32
    assert [r.op for r in guarded.reductions] == ["nonfinite"]


def test_the_counter_survives_a_checkpoint():
    ours = _params()
    opt = optforge.Adam(ours, skip_nonfinite=True)
    for p in ours:
        p.grad = torch.full_like(p, math.inf)
    opt.step()
    fresh = optforge.Adam(_params(), skip_nonfinite=True)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["nonfinite_skips"] == 1
