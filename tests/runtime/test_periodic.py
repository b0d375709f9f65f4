"""Periodic steps in elementwise rules: ``every(k, value, otherwise)`` and ``step() % k``,
a host-side condition that selects the branch (issue 15)."""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first
import optforge
from optforge.dsl import DSLError, Rule, RuleSpec, eq, every, grad, param, sqrt, step, where
from tests.conftest import NATIVE_BACKENDS


def sgd_decay_every(lr=0.1, weight_decay=0.2, interval=3):
    """SGD whose decoupled weight decay is applied on steps 1, 4, 7..."""
    p, g = param(), grad()
    return Rule(every(interval, p * (1 - lr * weight_decay), p) - lr * g)


def sgd_decay_modulo(lr=0.1, weight_decay=0.2, interval=3):
    p, g, t = param(), grad(), step()
    return Rule(where(eq(t % interval, 1 % interval), p * (1 - lr * weight_decay), p) - lr * g)


def sgd_decay_lazy(lr=0.1, weight_decay=0.2, interval=3):
    """The branch not taken is not computed on the host: sqrt(t - 2) at step 1 is fine."""
    p, g, t = param(), grad(), step()
    return Rule(every(interval, p, p * (1 - lr * weight_decay * sqrt(t - 2))) - lr * g)


def _reference(start, grads, lr=0.1, weight_decay=0.2, interval=3, lazy=False):
    p = start.double().clone()
    for t, g in enumerate(grads, 1):
        due = (t - 1) % interval == 0
        if lazy:
            p = p if due else p * (1 - lr * weight_decay * (t - 2) ** 0.5)
        elif due:
            p = p * (1 - lr * weight_decay)
        p = p - lr * g.double()
    return p


def _run(rule, backend, interval=3, steps=8):
    device = DEVICE if backend == "triton" else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(257, generator=gen)
    grads = [torch.randn(257, generator=gen) for _ in range(steps)]
    p = torch.nn.Parameter(start.clone().to(device))
    opt = optforge.Optimizer([p], rule, backend=backend, interval=interval)
    for g in grads:
        p.grad = g.to(device)
        opt.step()
    return p.detach().cpu().double(), start, grads


@pytest.mark.parametrize("backend", [*NATIVE_BACKENDS, "triton"])
@pytest.mark.parametrize("rule", [sgd_decay_every, sgd_decay_modulo])
def test_weight_decay_every_third_step(rule, backend):
    ours, start, grads = _run(rule, backend)
    expected = _reference(start, grads)
    assert (ours - expected).norm() / expected.norm() < 1e-6
    ours2, _, _ = _run(rule, backend, interval=2)  # the interval is a run-time scalar
    expected2 = _reference(start, grads, interval=2)
    assert (ours2 - expected2).norm() / expected2.norm() < 1e-6


def test_only_the_taken_branch_is_computed_on_the_host(backend):
    ours, start, grads = _run(sgd_decay_lazy, backend)
    expected = _reference(start, grads, lazy=True)
    assert (ours - expected).norm() / expected.norm() < 1e-6


def test_bad_intervals_are_refused_naming_them():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"interval=2.5 in defaults: every\(k, ...\)'s"):
        optforge.Optimizer([p], sgd_decay_every, interval=2.5)
    opt = optforge.Optimizer([p], sgd_decay_every)
    with pytest.raises(ValueError, match="interval=0 in param group 1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "interval": 0})
    assert len(opt.param_groups) == 1 and not opt.state  # refused before anything changed
    p.grad = torch.ones(3)
    opt.step()  # and the optimizer still steps
    assert len(opt.state) == 1

    def constant_interval(lr=0.1):
        return Rule(every(0.5, param(), param() * 2) - lr * grad())

    with pytest.raises(DSLError, match="whole number >= 1"):
        RuleSpec(constant_interval).build()


def test_modulo_of_a_tensor_is_refused():
    def rule(lr=0.1):
        return Rule(param() - lr * (grad() % 2))

    with pytest.raises(DSLError, match="modulo.*scalars only"):
        RuleSpec(rule).build()
