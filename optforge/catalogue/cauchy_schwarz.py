"""Cauchy-Schwarz regularisers as gradient transforms for ``chain(...)`` — Taner, Wang & Studer
(2025), ICLR, "Cauchy-Schwarz Regularizers", arXiv:2503.01639 (seed 004:112); the formulas
and gradients of the official code (github.com/IIP-Group/CS_regularizers, solution_recovery).

Each is >= 0 by Cauchy-Schwarz and vanishes exactly on its target set at every scale a (so
there is no a to tune), with S_k = sum x^k and N = numel:
- binary, x in {-a, a}^N:  l = N S_4 - S_2^2;  grad = 4 N x^3 - 4 S_2 x
- ternary, x in {-a, 0, a}^N:  l = S_2 S_6 - S_4^2;  grad = 2 x (S_6 + 3 S_2 x^4 - 4 S_4 x^2)
- one-sided binary, x in {0, a}^N:  l = S_2 S_4 - S_3^2;  grad = 2 x (S_4 + 2 S_2 x^2 - 3 S_3 x)
A transform adds lambda * grad l(p) to the update: before the scaling it regularises the loss
(``chain(cs_binary(), scale_by_adam(), scale_by_lr())``), after it the step is decoupled.
The sums run over the tensor, or over each row of the (shape[0], -1) view with
``over="row"`` (one scale per output channel, as the paper's network quantisation).
- orthogonal, X with orthonormal rows or columns times a:  l = d ||X^T X||_F^2 - ||X||_F^4;
  grad = 4 d X X^T X - 4 ||X||_F^2 X, on the (rows, cols) view, d = min(rows, cols): the
  eigenvalues of X^T X beyond d are 0, so Cauchy-Schwarz over the d others gives l >= 0,
  = 0 iff they are all equal. The official code (orth_matrix_recovery.m) writes N for the
  row count of a tall X with N = K columns in its experiments, where d = N = K: the same.
  A matrix rule (matrix stage: X X^T X and ||X||_F), for parameters of >= 2 dimensions.
"""
from ..dsl import Transform, fnorm, matmul, minimum, numel, param, transpose
from ..dsl import sum as total


def _cs(name, key, lam, over, grad_of):
    def apply(u, h, writes):
        x = param()
        return u + h[key] * grad_of(x, lambda k: total(x**k, over=over), numel(over))
    return Transform(name, {key: lam}, apply)


def cs_binary(lambda_bin=1e-3, over="tensor") -> Transform:
    """Add lambda_bin * grad(N S_4 - S_2^2): pulls every entry to +-a, a common scale."""
    return _cs("cs_binary", "lambda_bin", lambda_bin, over,
               lambda x, S, n: 4 * n * x**3 - 4 * S(2) * x)


def cs_ternary(lambda_ter=1e-3, over="tensor") -> Transform:
    """Add lambda_ter * grad(S_2 S_6 - S_4^2): pulls every entry to 0 or +-a."""
    return _cs("cs_ternary", "lambda_ter", lambda_ter, over,
               lambda x, S, n: 2 * x * (S(6) + 3 * S(2) * x**4 - 4 * S(4) * x**2))


def cs_one_sided_binary(lambda_osb=1e-3, over="tensor") -> Transform:
    """Add lambda_osb * grad(S_2 S_4 - S_3^2): pulls every entry to 0 or a (one sign)."""
    return _cs("cs_one_sided_binary", "lambda_osb", lambda_osb, over,
               lambda x, S, n: 2 * x * (S(4) + 2 * S(2) * x**2 - 3 * S(3) * x))


def cs_orthogonal(lambda_orth=1e-3) -> Transform:
    """Add lambda_orth * grad(d ||X^T X||_F^2 - ||X||_F^4): pulls the weight matrix to
    orthonormal rows (or columns) at a common scale."""
    def apply(u, h, writes):
        x = param()
        d = minimum(numel("row"), numel("col"))  # the (rows, cols) view's smaller side
        gram_x = matmul(matmul(x, transpose(x)), x)
        return u + h["lambda_orth"] * (4 * d * gram_x - 4 * fnorm(x) ** 2 * x)
    return Transform("cs_orthogonal", {"lambda_orth": lambda_orth}, apply)
