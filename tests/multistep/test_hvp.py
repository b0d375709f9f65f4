"""The building blocks of the second-order optimizers: Hessian-vector and mixed products
equal the dense Hessian's blocks times the vector; conjugate gradient solves SPD systems
to its tolerance within its iteration bound and reports negative curvature."""
import pytest
import torch

from optforge.multistep.hvp import conjugate_gradient, grad_with_graph, vjp


def test_products_match_dense_hessian_blocks():
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    f = lambda x, y: torch.sin(x) @ B @ torch.tanh(y.reshape(-1)) + (x ** 3).sum() * y.sum()
    g = grad_with_graph("test", f(x, y), [x, y])
    H = torch.autograd.functional.hessian(lambda z: f(z[:4], z[4:].reshape(2, 3)),
                                          torch.cat([x, y.reshape(-1)]).detach())
    u = torch.randn(4, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    # H [u; v] over both, and the mixed blocks D_xy v = d/dx <g_y, v>, D_yx u = d/dy <g_x, u>
    hu = vjp(g, [x, y], [u, v])
    dense = H @ torch.cat([u, v.reshape(-1)])
    assert torch.allclose(torch.cat([hu[0], hu[1].reshape(-1)]), dense, rtol=1e-12, atol=1e-12)
    assert torch.allclose(vjp([g[1]], [x], [v])[0], H[:4, 4:] @ v.reshape(-1), rtol=1e-12)
    assert torch.allclose(vjp([g[0]], [y], [u])[0].reshape(-1), H[4:, :4] @ u, rtol=1e-12)


def test_constant_gradients_and_unused_parameters_give_zero_products():
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    z = torch.ones(2, dtype=torch.float64, requires_grad=True)
    g = grad_with_graph("test", (2 * x).sum(), [x, z])   # linear in x, z unused
    assert torch.equal(g[1], torch.zeros(2, dtype=torch.float64))
    out = vjp(g, [x, z], [torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)])
    assert all(torch.equal(o, torch.zeros_like(o)) for o in out)


@pytest.mark.parametrize("n", [1, 5, 40])
def test_conjugate_gradient_solves_spd_systems(n):
    gen = torch.Generator().manual_seed(n)
    M = torch.randn(n, n, generator=gen, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    res = conjugate_gradient(lambda v: [A @ v[0]], [b], max_iter=10 * n, tol=1e-12)
    assert not res.negative_curvature and res.iterations < 10 * n
    assert (A @ res.solution[0] - b).norm() <= 1e-12 * b.norm() * 1.0001
    assert torch.allclose(res.solution[0], torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    capped = conjugate_gradient(lambda v: [A @ v[0]], [b], max_iter=1, tol=1e-12)
    assert capped.iterations == 1 and (n == 1 or capped.residual > 1e-12 * b.norm())


def test_conjugate_gradient_stops_on_negative_curvature_and_zero_rhs():
    A = torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64))
    res = conjugate_gradient(lambda v: [A @ v[0]], [torch.tensor([0.0, 1.0], dtype=torch.float64)],
                             max_iter=5, tol=1e-12)
    assert res.negative_curvature and res.iterations == 0
    assert torch.equal(res.solution[0], torch.zeros(2, dtype=torch.float64))
    zero = conjugate_gradient(lambda v: [A @ v[0]], [torch.zeros(2, dtype=torch.float64)],
                              max_iter=5, tol=1e-12)
    assert zero.iterations == 0 and not zero.negative_curvature
