"""ScaledGD(lambda) — Xu, Shen, Ma & Chi (2023), "The Power of Preconditioning in
Overparameterized Low-Rank Matrix Sensing", ICML (seed 004:160).

Gradient descent on a factor X with the damped right preconditioner (X^T X + lambda I)^-1:

    X <- X - lr * grad(X) @ (X^T X + lambda I)^-1

The parameter is X itself (its 2-D view (shape[0], numel / shape[0]) for more dimensions),
so the preconditioner is cols x cols: for the paper's n x r factor of a low-rank matrix
X X^T it is r x r. lambda > 0 (``damping``) keeps the inverse defined when X is rank
deficient (overparameterisation, small initialisation); it is inverted by Cholesky in
float64 from the float32 X^T X. 0-D and 1-D parameters are refused.
"""
from ..dsl import Rule, grad, inverse, matmul, param, transpose
from ._base import CatalogueOptimizer


def scaled_gd(lr=1e-2, damping=1e-3):
    p, g = param(), grad()
    return Rule(p - lr * matmul(g, inverse(matmul(transpose(p), p), damping)))


class ScaledGD(CatalogueOptimizer):
    """Gradient descent right-preconditioned by (X^T X + lambda I)^-1 (ScaledGD(lambda))."""

    rule = scaled_gd
    source = "Xu, Shen, Ma & Chi (2023), ICML (ScaledGD(lambda)); seed 004:160"
