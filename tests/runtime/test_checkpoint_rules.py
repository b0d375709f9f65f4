"""A param group's "rule" is saved by name, so torch.load(..., weights_only=True) reads
the checkpoint; an unregistered function stays a function (weights_only=False only)."""
import io
import pickle

import pytest
import torch

import optforge
from optforge.catalogue.adamw import adamw
from optforge.dsl import Rule, grad, param
from optforge.dsl import names


def _save(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def _params(seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(6, 4), (5,)]]


def _run(opt, params, steps, first=0):
    for k in range(first, first + steps):
        gen = torch.Generator().manual_seed(k)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def scaled_sign(lr=0.01):
    p, g = param(), grad()
    return Rule(p - lr * g / (abs(g) + 1))


@pytest.fixture
def registered():
    optforge.register_rule(scaled_sign)
    yield "scaled_sign"
    names.unregister("scaled_sign")


@pytest.mark.parametrize("given, name", [
    (optforge.AdamW, "AdamW"), ("AdamW", "AdamW"), (adamw, "AdamW"),
    (optforge.RuleSpec(adamw), "AdamW"), (scaled_sign, "scaled_sign")],
    ids=["class", "name", "function", "RuleSpec", "registered"])
def test_group_rules_are_saved_by_name_and_load_weights_only(given, name, request):
    if given is scaled_sign:
        request.getfixturevalue("registered")
    params = _params(0)
    opt = optforge.Muon([{"params": params[:1]}, {"params": params[1:], "rule": given}])
    _run(opt, params, 2)
    saved = opt.state_dict()
    assert saved["param_groups"][1]["rule"] == name
    assert opt.param_groups[1]["rule"] is given  # the live group is untouched
    loaded = torch.load(_save(saved), weights_only=True)

    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    restored = optforge.Muon([{"params": copies[:1]}, {"params": copies[1:], "rule": given}])
    restored.load_state_dict(loaded)
    assert restored.param_groups[1]["rule"] is given  # the same rule: the given object stays
    _run(opt, params, 3, first=2)
    _run(restored, copies, 3, first=2)
    for a, b in zip(params, copies):
        assert torch.equal(a, b)


def test_a_named_rule_loads_into_a_group_that_runs_another():
    """The checkpoint's rule wins, as its hyperparameters do (a Muon group becomes AdamW)."""
    params = _params(1)
    opt = optforge.Muon([{"params": params[:1], "rule": "AdamW"}])
    _run(opt, params[:1], 1)
    other = optforge.Muon([{"params": params[:1]}])
    other.load_state_dict(torch.load(_save(opt.state_dict()), weights_only=True))
    assert other.spec_of(other.param_groups[0]).name == "AdamW"


def unregistered(lr=0.1):
    return Rule(param() - lr * grad())


def test_an_unregistered_function_is_kept_and_needs_weights_only_false():
    params = _params(2)
    opt = optforge.Muon([{"params": params[:1]}, {"params": params[1:], "rule": unregistered}])
    _run(opt, params, 1)
    saved = opt.state_dict()
    assert saved["param_groups"][1]["rule"] is unregistered
    with pytest.raises(pickle.UnpicklingError, match="unregistered"):
        torch.load(_save(saved), weights_only=True)
    opt.load_state_dict(torch.load(_save(saved), weights_only=False))
    assert opt.param_groups[1]["rule"] is unregistered


def test_register_rule_refuses_taken_and_bad_names(registered):
    def other(lr=0.1):
        return Rule(param() - lr * grad())

    with pytest.raises(ValueError, match="'AdamW' is a catalogue optimizer's name"):
        optforge.register_rule(other, name="AdamW")
    with pytest.raises(ValueError, match="'scaled_sign' is already registered"):
        optforge.register_rule(other, name="scaled_sign")
    with pytest.raises(ValueError, match="not a Python identifier"):
        optforge.register_rule(other, name="a\nb")
    assert optforge.register_rule(scaled_sign) is scaled_sign  # again, same rule: fine
