"""The compiled-rule cache is bounded: rule functions made in a loop do not accumulate
without limit, and an evicted variant is rebuilt (same plan) when asked for again."""
import torch

from optforge import Optimizer
from optforge.dsl import Rule, RuleSpec, grad, param
from optforge.runtime import compiled


def _scaled_sgd(k):
    def rule(lr=0.1):
        p, g = param(), grad()
        return Rule(p - lr * k * g)
    rule.__name__ = f"sgd_times_{k}"
    return rule


def test_the_cache_keeps_the_most_recent_variants(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_COMPILED", 3)
    monkeypatch.setattr(compiled, "_cache", compiled.OrderedDict())
    specs = [RuleSpec(_scaled_sgd(k)) for k in range(5)]
    first = compiled.compile_rule(specs[0], specs[0].default_variant)
    for spec in specs[1:3]:
        compiled.compile_rule(spec, spec.default_variant)
    assert compiled.compile_rule(specs[0], specs[0].default_variant) is first  # a hit: now newest
    for spec in specs[3:]:
        compiled.compile_rule(spec, spec.default_variant)
    assert len(compiled._cache) == 3
    assert [key[0] for key in compiled._cache] == [specs[0].fn, specs[3].fn, specs[4].fn]
    rebuilt = compiled.compile_rule(specs[1], specs[1].default_variant)  # was evicted
    assert rebuilt.plan.fingerprint() == compiled.lower(RuleSpec(specs[1].fn).build(), specs[1].hyper_symbols).fingerprint()
    assert len(compiled._cache) == 3


def test_an_optimizer_steps_across_evictions(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_COMPILED", 1)
    monkeypatch.setattr(compiled, "_cache", compiled.OrderedDict())
    p1, p2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    o1 = Optimizer([p1], _scaled_sgd(1), backend="torch")
    o2 = Optimizer([p2], _scaled_sgd(2), backend="torch")
    for _ in range(3):  # each step evicts the other optimizer's rule
        p1.grad, p2.grad = torch.ones(3), torch.ones(3)
        o1.step()
        o2.step()
    assert torch.allclose(p1.detach(), torch.full((3,), 0.7))
    assert torch.allclose(p2.detach(), torch.full((3,), 0.4))
