"""given(name): tensors supplied per step, read like states on every backend, never stored."""
import pytest
import torch

import optforge
from optforge.dsl import DSLError, Rule, RuleSpec, given, grad, lerp, param, state
from optforge.runtime.inputs import PROVIDERS, InputError, register_provider


def two_momenta(lr=0.1, beta=0.9, beta_extra=0.5):
    p, g, h = param(), grad(), given("extra")
    m = lerp(state("m"), g, 1 - beta)
    n = lerp(state("n"), h, 1 - beta_extra)
    return Rule(p - lr * (m + n), m=m, n=n)


def _reference(p, grads, extras, lr=0.1, beta=0.9, beta_extra=0.5):
    m, n = torch.zeros_like(p), torch.zeros_like(p)
    for g, h in zip(grads, extras):
        m = beta * m + (1 - beta) * g
        n = beta_extra * n + (1 - beta_extra) * h
        p = p - lr * (m + n)
    return p


@pytest.mark.parametrize("shape", [(1,), (7, 13), (3, 4, 5)], ids=str)
def test_supplied_input_matches_a_plain_torch_reference(backend, shape):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(shape))
    start = w.detach().clone()
    grads = [torch.randn(shape) for _ in range(5)]
    extras = [torch.randn(shape) for _ in range(5)]
    opt = optforge.Optimizer([w], two_momenta, backend=backend)
    for g, h in zip(grads, extras):
        w.grad = g.clone()
        opt.step(inputs={"extra": {w: h}})
    torch.testing.assert_close(w.detach(), _reference(start, grads, extras), rtol=1e-6,
                               atol=1e-6)
    assert set(opt.state[w]) == {"step", "m", "n"}  # the input is not stored


def test_provider_is_called_each_step():
    calls = []

    def provide(optimizer, group, params, closure):
        calls.append(len(params))
        return [torch.full_like(p, 2.0) for p in params]

    register_provider("extra", provide)
    try:
        w = torch.nn.Parameter(torch.zeros(3))
        opt = optforge.Optimizer([w], two_momenta, lr=1.0, beta=0.0, beta_extra=0.0)
        w.grad = torch.zeros(3)
        opt.step()
        opt.step()
        assert calls == [1, 1]
        torch.testing.assert_close(w.detach(), torch.full((3,), -4.0))
    finally:
        PROVIDERS.pop("extra")


def test_missing_or_malformed_inputs_are_named():
    w = torch.nn.Parameter(torch.zeros(2, 3))
    w.grad = torch.ones(2, 3)
    opt = optforge.Optimizer([w], two_momenta)
    with pytest.raises(InputError, match=r"given\('extra'\), which no provider makes"):
        opt.step()
    with pytest.raises(InputError, match="no tensor for parameter 0 of group 0"):
        opt.step(inputs={"extra": {}})
    with pytest.raises(InputError, match=r"input 'extra' has shape \(3, 2\)"):
        opt.step(inputs={"extra": {w: torch.ones(3, 2)}})
    with pytest.raises(InputError, match="must map each parameter"):
        opt.step(inputs={"extra": [torch.ones(2, 3)]})
    with pytest.raises(InputError, match="dtype torch.int64"):
        opt.step(inputs={"extra": {w: torch.ones(2, 3, dtype=torch.long)}})
    assert not opt.state[w]  # nothing was created or written


def test_an_input_is_read_only():
    def writes_input(lr=0.1):
        h = given("extra")
        return Rule(param() - lr * h, extra=h * 2)

    with pytest.raises(DSLError, match="writes 'extra', an input"):
        RuleSpec(writes_input).build()
