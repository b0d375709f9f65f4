"""Hand-written matrix kernels that matrix stages call (torch matmuls: BLAS / cuBLAS)."""
from __future__ import annotations

import torch

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def as_matrix(x: torch.Tensor, what: str) -> torch.Tensor:
    """The 2-D view a matrix stage works on: ``(shape[0], -1)`` for ndim >= 2."""
    if x.dim() < 2:
        raise ValueError(f"{what} needs a parameter with at least 2 dimensions, got shape "
                         f"{tuple(x.shape)} (give 0-D and 1-D parameters an elementwise rule "
                         "in another optimizer or param group)")
    return x.reshape(x.shape[0], -1)


def orthogonalize(x: torch.Tensor, steps: float, a: float, b: float, c: float, eps: float,
                  dtype: str = "bfloat16", keep_dtype: bool = False) -> torch.Tensor:
    """Newton-Schulz quintic iteration towards the orthogonal factor of ``x`` (Muon).

    The Gram matrix is always the small one: ``X X^T`` for a wide ``x`` and ``X^T X`` for
    a tall one, where ``X (a I + b A + c A^2)`` is torch.optim.Muon's iteration on the
    transpose, transposed back (the same products, bit for bit on CPU BLAS: checked
    against torch.optim.Muon in the tests) without the strided copy a transpose costs.
    The result has ``x``'s shape, in float32, or with ``keep_dtype`` in the iteration's
    dtype (a buffer of that dtype takes it without a float32 round trip).
    """
    steps = check_steps(steps)
    m = as_matrix(x, "orthogonalize").to(_DTYPES[dtype])
    tall = m.shape[0] > m.shape[1]
    m = m / m.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = m.T @ m if tall else m @ m.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        # a X + X (b A + c A^2) for tall X; a X + (b A + c A^2) X for wide X
        m = torch.addmm(m, m, poly, beta=a) if tall else torch.addmm(m, poly, m, beta=a)
    return m.reshape(x.shape) if keep_dtype else m.reshape(x.shape).to(torch.float32)


# ---- the matrix stage's vocabulary (printed as _mx.<name>(...) by the torch printer) ----

def view2d(x: torch.Tensor) -> torch.Tensor:
    """A parameter-shaped tensor as the (rows, cols) matrix every matrix op sees."""
    return x.reshape(x.shape[0], -1)


def as_param(value: torch.Tensor, p: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """A (rows, cols) or scalar result as a ``dtype`` tensor shaped and laid out like ``p``
    (the buffer the elementwise kernel reads element for element with ``p``)."""
    value = torch.as_tensor(value, device=p.device)
    value = value.expand(p.shape) if value.dim() == 0 else value.reshape(p.shape)
    if value.dtype == dtype and value.stride() == p.stride():
        return value  # already laid out like p (Muon's contiguous bf16 result): no copy
    out = torch.empty_like(p, dtype=dtype)  # p's memory layout: kernels pair them by address
    return out.copy_(value)


def matmul(a, b):
    return a @ b


def transpose(a):
    return a.transpose(-2, -1)


def _sym(a):
    return (a + a.transpose(-2, -1)) * 0.5


def inv_root(a, p, eps, method):
    """(a + eps I)^(-1/p) of a symmetric PSD a: eigh in float64 (eigenvalues clamped at 0),
    or the coupled Newton iteration (method 1)."""
    p = float(p)
    if int(method) == 0:
        vals, vecs = torch.linalg.eigh(_sym(a).double())
        vals = (vals.clamp(min=0) + float(eps)).pow(-1.0 / p)
        return ((vecs * vals) @ vecs.T).to(a.dtype)
    return _newton_inv_root(a, p, float(eps))


def _newton_inv_root(a, p: float, eps: float, iters: int = 100, tol: float = 1e-6):
    """Coupled Newton iteration (Guo & Higham) for A^(-1/p), matmuls only; in float32."""
    n, root = a.shape[0], int(round(p))
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    a = _sym(a) + eps * eye
    z = (1 + root) / (2 * torch.linalg.matrix_norm(a))
    x = eye * z.pow(1.0 / root)
    m = a * z
    for _ in range(iters):
        t = ((1 + root) * eye - m) / root
        x = x @ t
        m = torch.linalg.matrix_power(t, root) @ m
        if torch.linalg.matrix_norm(m - eye, ord=float("inf")) < tol:
            break
    return x


def inverse(a, damping):
    eye = torch.eye(a.shape[0], dtype=torch.float64, device=a.device)
    return torch.cholesky_inverse(torch.linalg.cholesky(_sym(a).double() + float(damping) * eye)
                                  ).to(a.dtype)


def solve(a, b):
    return torch.linalg.solve(a, b)


def sherman_morrison(a_inv, u, v):
    """(A + u v^T)^-1 = A^-1 - A^-1 u v^T A^-1 / (1 + v^T A^-1 u)."""
    au = a_inv @ u
    va = v.transpose(-2, -1) @ a_inv
    return a_inv - (au @ va) / (1.0 + va @ u)


def eigenvectors(a):
    return torch.linalg.eigh(_sym(a).double())[1].to(a.dtype)


def power_iteration(a, q):
    return torch.linalg.qr(a @ q)[0]


def add_diagonal(a, lam):
    return a + lam * torch.eye(a.shape[0], dtype=a.dtype, device=a.device)


def diagonal(a):
    return torch.diagonal(a).unsqueeze(1)


def trace(a):
    return torch.trace(a)


def fnorm(x):
    return torch.linalg.vector_norm(x)


def batch_mean(x):
    return x.mean(0).unsqueeze(1)


def batch_size(x):
    return torch.tensor(float(x.shape[0]), dtype=x.dtype, device=x.device)


def check_steps(steps) -> int:
    """orthogonalize's iteration count as an int, or a ValueError naming it."""
    steps = float(steps)
    if not (0 <= steps < 100 and steps == int(steps)):  # NaN fails too
        raise ValueError(f"orthogonalize: steps = {steps:g} must be a whole number in "
                         "[0, 100) (Muon's ns_steps)")
    return int(steps)


def check_interval(k) -> int:
    """every(k, ...)'s interval as an int, or a ValueError naming it."""
    k = float(k)
    if not (1 <= k < float("inf") and k == int(k)):  # NaN fails too
        raise ValueError(f"every(k, ...): the update interval k = {k:g} must be a whole number "
                         ">= 1 (check the rule's interval hyperparameter, e.g. "
                         "factor_interval or precondition_frequency)")
    return int(k)


def due(t, k) -> bool:
    """``every(k, ...)``: steps 1, 1+k, 1+2k..."""
    return (int(t) - 1) % check_interval(k) == 0
