"""States that start from the first gradient: ``state(name, init=grad())`` (issue 15)."""
import pytest
import torch

import optforge
from optforge.dsl import DSLError, Rule, RuleSpec, grad, param, sqrt, state, step
from tests.conftest import norm_rel


def ema_from_first_grad(lr=0.1, beta=0.9):
    """Momentum whose buffer starts at the first gradient (not at 0: no bias correction),
    and a second moment starting at g^2 + 1."""
    p, g = param(), grad()
    m = beta * state("m", init=grad()) + (1 - beta) * g
    v = beta * state("v", init=grad() ** 2 + 1) + (1 - beta) * g * g
    return Rule(p - lr * m / sqrt(v), m=m, v=v)


def _reference(start, grads, lr=0.1, beta=0.9):
    p, m, v = start.double().clone(), None, None
    for g in grads:
        g = g.double()
        m = g if m is None else m
        v = g * g + 1 if v is None else v
        m = beta * m + (1 - beta) * g
        v = beta * v + (1 - beta) * g * g
        p = p - lr * m / v.sqrt()
    return p


def test_states_start_from_the_first_gradient(backend):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(7, 13, generator=gen)
    grads = [torch.randn(7, 13, generator=gen) for _ in range(5)]
    p = torch.nn.Parameter(start.clone())
    opt = optforge.Optimizer([p], ema_from_first_grad, backend=backend)
    p.grad = grads[0]
    opt.step()
    # after one step m = beta g1 + (1 - beta) g1 = g1
    torch.testing.assert_close(opt.state[p]["m"], grads[0])
    for g in grads[1:]:
        p.grad = g
        opt.step()
    assert norm_rel(p.detach(), _reference(start, grads)) < 1e-6


def test_a_sparse_first_gradient_is_its_dense_value():
    def rule(lr=0.1):
        return Rule(param() - lr * state("m", init=grad()), m=state("m", init=grad()))

    class Sparse(optforge.Optimizer):
        supports_sparse_grads = True

    p = torch.nn.Parameter(torch.zeros(4, 2))
    opt = Sparse([p], rule, backend="torch")
    dense = torch.tensor([[1.0, 2.0], [0, 0], [3.0, 4.0], [0, 0]])
    p.grad = dense.to_sparse()
    opt.step()
    torch.testing.assert_close(p.detach(), -0.1 * dense)


def test_init_may_not_read_the_step():
    def rule(lr=0.1):
        return Rule(param() - lr * state("m", init=step()), m=grad())

    with pytest.raises(DSLError, match="param\\(\\) and grad\\(\\)"):
        RuleSpec(rule).build()
