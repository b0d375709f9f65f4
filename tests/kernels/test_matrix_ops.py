"""The matrix stage's torch vocabulary (kernels/matrix.py) against direct linear algebra."""
import pytest
import torch

from optforge.kernels import matrix as mx


def _spd(n, seed=0, dtype=torch.float64):
    a = torch.randn(n, n + 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return a @ a.T / n + 0.1 * torch.eye(n, dtype=dtype)


@pytest.mark.parametrize("p", [2, 4])
def test_inv_root_eigh_and_newton_agree_with_the_definition(p):
    a = _spd(6)
    root = mx.inv_root(a, p, 1e-3, 0)
    back = torch.linalg.matrix_power(root, p)  # (A + eps I)^-1
    torch.testing.assert_close(back @ (a + 1e-3 * torch.eye(6, dtype=a.dtype)),
                               torch.eye(6, dtype=a.dtype), rtol=0, atol=1e-9)
    newton = mx.inv_root(a.float(), p, 1e-3, 1)
    torch.testing.assert_close(newton, root.float(), rtol=0, atol=2e-4)


def test_inv_root_clamps_negative_eigenvalues_of_a_nearly_psd_factor():
    v = torch.randn(5, 1, dtype=torch.float64)
    a = v @ v.T - 1e-12 * torch.eye(5, dtype=torch.float64)  # rank 1, tiny negative part
    assert torch.isfinite(mx.inv_root(a, 4, 1e-4, 0)).all()


def test_inverse_solve_and_sherman_morrison():
    a = _spd(5, seed=1)
    eye = torch.eye(5, dtype=a.dtype)
    torch.testing.assert_close(mx.inverse(a, 0.5) @ (a + 0.5 * eye), eye, rtol=0, atol=1e-10)
    b = torch.randn(5, 3, dtype=a.dtype)
    torch.testing.assert_close(a @ mx.solve(a, b), b, rtol=0, atol=1e-10)
    u, v = torch.randn(5, 1, dtype=a.dtype), torch.randn(5, 1, dtype=a.dtype)
    torch.testing.assert_close(mx.sherman_morrison(torch.linalg.inv(a), u, v),
                               torch.linalg.inv(a + u @ v.T), rtol=1e-8, atol=1e-10)


def test_eigenbases():
    a = _spd(6, seed=2)
    q = mx.eigenvectors(a)
    torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=a.dtype), rtol=0, atol=1e-10)
    d = q.T @ a @ q
    torch.testing.assert_close(d, torch.diag(torch.diagonal(d)), rtol=0, atol=1e-10)
    # one QR refresh of the exact basis keeps it (up to column signs)
    refreshed = mx.power_iteration(a, q)
    torch.testing.assert_close((refreshed.T @ q).abs(), torch.eye(6, dtype=a.dtype), rtol=0,
                               atol=1e-8)


def test_small_helpers():
    a = torch.arange(9.0).reshape(3, 3)
    assert mx.diagonal(a).shape == (3, 1) and mx.trace(a) == 12.0
    assert mx.fnorm(a) == torch.linalg.norm(a)
    x = torch.randn(7, 4)
    torch.testing.assert_close(mx.batch_mean(x), x.mean(0, keepdim=True).T)
    assert mx.batch_size(x) == 7.0
    torch.testing.assert_close(mx.add_diagonal(a, 2.0), a + 2 * torch.eye(3))
    assert [mx.due(t, 3) for t in range(1, 8)] == [True, False, False, True, False, False, True]
    p = torch.zeros(2, 3, 2)
    assert mx.as_param(torch.ones(2, 6), p).shape == (2, 3, 2)
    assert mx.as_param(torch.tensor(3.0), p).eq(3.0).all()
