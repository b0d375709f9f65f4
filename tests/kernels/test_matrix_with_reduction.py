"""A rule with a matrix state and a tensor reduction: the reduce stage runs before the
matrix stage has made its buffers, so the launchers must not touch them there (triton
crashed with "'NoneType' object has no attribute 'data_ptr'", issue 15)."""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first
import optforge
from optforge.dsl import Rule, grad, matmul, matrix_state, param, sqrt, state, transpose
from optforge.dsl import sum as total
from tests.conftest import NATIVE_BACKENDS


def preconditioned(lr=0.1, beta=0.9):
    p, g = param(), grad()
    left = matrix_state("L", ("rows", "rows"), init="identity", scale=1e-3)
    new_left = beta * left + matmul(g, transpose(g))
    m = beta * state("m") + g
    return Rule(p - lr * matmul(new_left, m) / sqrt(total(g**2) + 1e-8), L=new_left, m=m)


def reference(p, grads, lr=0.1, beta=0.9):
    """The same rule in plain torch (float64)."""
    p, left, m = p.double().clone(), 1e-3 * torch.eye(p.shape[0], dtype=torch.float64), 0
    for g in grads:
        g = g.double()
        left = beta * left + g @ g.T
        m = beta * m + g
        p = p - lr * (left @ m) / torch.sqrt((g**2).sum() + 1e-8)
    return p


@pytest.mark.parametrize("backend", [*NATIVE_BACKENDS, "triton"])
def test_matrix_state_and_tensor_reduction(backend):
    device = DEVICE if backend == "triton" else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(6, 4, generator=gen)
    grads = [torch.randn(6, 4, generator=gen) for _ in range(4)]
    p = torch.nn.Parameter(start.clone().to(device))
    opt = optforge.Optimizer([p], preconditioned, backend=backend)
    for g in grads:
        p.grad = g.to(device)
        opt.step()
    expected = reference(start, grads)
    assert (p.detach().cpu().double() - expected).norm() / expected.norm() < 1e-5
