"""SOAP — Vyas et al. (2024), "SOAP: Improving and Stabilizing Shampoo using Adam",
arXiv:2409.11321, Algorithms 3 and 4 (the 2-D layer), with the official implementation's
order of operations (github.com/nikhilvyas/SOAP).

Every parameter is seen as its 2-D view G (rows, cols) = (shape[0], numel / shape[0]) (a
conv kernel (out, in, kh, kw) is (out, in*kh*kw); the official code instead keeps one
factor per tensor dimension, or merges dimensions); 0-D and 1-D parameters are refused.

Step 1 only initialises: L = (1 - b_s) G G^T, R = (1 - b_s) G^T G, and Q_L, Q_R their
eigenvectors (float64 eigh, ordered by descending eigenvalue); the parameter, exp_avg and
exp_avg_sq stay as they are (so the projection never uses the gradient it projects).
On step t > 1, with s = t - 1 Adam steps:

    G' = Q_L^T G Q_R                           (projected with the bases before this step)
    M = b1 M + (1 - b1) G                      (exp_avg: first moment in the ORIGINAL basis)
    V = b2 V + (1 - b2) G' * G'                (exp_avg_sq: second moment in the eigenbasis)
    N = Q_L [(Q_L^T M Q_R) / (sqrt(V) + eps)] Q_R^T
    p <- (p - lr * sqrt(1 - b2^s) / (1 - b1^s) * N) * (1 - lr * weight_decay)
         (no bias correction with ``correct_bias=False``; decoupled decay after the step)
    L = b_s L + (1 - b_s) G G^T,  R = b_s R + (1 - b_s) G^T G   (after the update)
    if s % f == 0:  Q_L = QR(L Q_L),  Q_R = QR(R Q_R)   (one power iteration, Algorithm 4,
                                                        on the factors just updated)

b_s = shampoo_beta (the official default None means b2; here a number, default 0.95 =
the default b2), f = precondition_frequency. Difference from the official code: before the
QR, it reorders the columns of L Q by their estimated eigenvalues diag(Q^T L Q), descending,
and permutes exp_avg_sq's rows / columns to match; the paper's Algorithm 4 does not, and
this rule does not (the DSL has no permutation op yet), so the two agree while that order
is unchanged. Adam is invariant to the sign and order of the basis vectors, so neither
the signs eigh picks nor the column order of Q changes the update between refreshes.
"""
from ..dsl import (Rule, eigenvectors, grad, matmul, matrix_state, maximum, param,
                   power_iteration, sqrt, state, step, transpose, where)
from ..dsl.matrix import every
from ._base import CatalogueOptimizer

# every(FIRST_ONLY, a, b) is a on step 1 only (then on step 1 + 2^40): the initial eigh
FIRST_ONLY = 2 ** 40


def soap(lr=3e-3, betas=(0.95, 0.95), shampoo_beta=0.95, eps=1e-8, weight_decay=1e-2,
         precondition_frequency=10, correct_bias=True):
    p, g, t = param(), grad(), step()
    b1, b2 = betas
    QL = matrix_state("QL", ("rows", "rows"), init="identity")
    QR = matrix_state("QR", ("cols", "cols"), init="identity")
    L = shampoo_beta * matrix_state("L", ("rows", "rows"), init="zeros") \
        + (1 - shampoo_beta) * matmul(g, transpose(g))
    R = shampoo_beta * matrix_state("R", ("cols", "cols"), init="zeros") \
        + (1 - shampoo_beta) * matmul(transpose(g), g)

    # step 1 only initialises: its moment weights and step size are 0 (exactly: p, M, V
    # come out bit for bit unchanged)
    first = t <= 1
    keep1, keep2 = where(first, 1, b1), where(first, 1, b2)
    projected = matmul(matmul(transpose(QL), g), QR)
    m = keep1 * state("exp_avg") + (1 - keep1) * g
    v = keep2 * state("exp_avg_sq") + (1 - keep2) * projected * projected
    rotated = matmul(matmul(transpose(QL), m), QR) / (sqrt(v) + eps)
    direction = matmul(matmul(QL, rotated), transpose(QR))
    s = maximum(t - 1, 1)  # Adam steps; the max keeps step 1's unused scale finite
    size = lr * sqrt(1 - b2**s) / (1 - b1**s) if correct_bias else lr
    size, decay = where(first, 0, size), where(first, 0, lr * weight_decay)
    new_p = (p - size * direction) * (1 - decay)

    def refreshed(factor, basis):  # eigenvectors of -F: descending eigenvalues of F
        return every(precondition_frequency,
                     every(FIRST_ONLY, eigenvectors(-factor), power_iteration(factor, basis)),
                     basis)

    return Rule(new_p, exp_avg=m, exp_avg_sq=v, L=L, R=R,
                QL=refreshed(L, QL), QR=refreshed(R, QR))


class SOAP(CatalogueOptimizer):
    """Adam in the eigenbasis of Shampoo's Kronecker factors, refreshed by power iteration."""

    rule = soap
    source = "Vyas et al. (2024), arXiv:2409.11321, Algorithms 3-4; github.com/nikhilvyas/SOAP"
