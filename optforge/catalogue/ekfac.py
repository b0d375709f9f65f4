"""EK-FAC — George, Laurent, Bouthillier, Ballas & Vincent (2018), "Fast Approximate
Natural Gradient Descent in a Kronecker-factored Eigenbasis" (seed 002:68, 004:26).

K-FAC's Kronecker factors ``A`` (cols x cols) and ``G`` (rows x rows) are kept exactly as
in ``kfac.py`` (EMAs of ``a^T a / n`` and ``ds^T ds * n`` every ``factor_interval`` steps,
decay ``min(1 - 1/k, stat_decay)``). Their eigenbases ``Q_A``, ``Q_G`` are recomputed
every ``eigen_interval`` steps (EK-FAC's counterpart of K-FAC's inverse interval). Instead
of the Kronecker product of the factors' eigenvalues, EK-FAC uses the second moment of
the per-example gradients in that eigenbasis (the paper's eigenvalue correction ``s*``):

    s = E_i[(Q_G^T g_i Q_A)^2],   g_i = (n ds_i)^T a_i  (example i's gradient of W)

an elementwise rows x cols EMA, updated every ``scale_interval`` steps (default every
step: it is cheap) with the same decay schedule. Since g_i is an outer product,
``sum_i (Q_G^T g_i Q_A)^2 = n^2 ((ds Q_G)^2)^T (a Q_A)^2``: one matmul of squares, no
per-example gradient is formed. The update is

    W -= lr buf,  buf = momentum buf + Q_G ((Q_G^T grad Q_A) / (s + damping)) Q_A^T
                                     + weight_decay W

(torch SGD, dampening 0, on the preconditioned gradient; damping is added to the
corrected eigenvalues, the paper's epsilon). ``s`` is not reset when the eigenbasis is
refreshed: its EMA carries across refreshes (a refresh rotates the basis a little
between two nearby factor estimates). With fewer examples than columns (or rows) a
factor is singular and the eigenbasis of its null space is the eigensolver's arbitrary
choice; the scales later batches put in that subspace depend on it, as in any EK-FAC
implementation (the damping bounds the step there). For ``nn.Conv2d`` each (example,
position) row of the unfolded input counts as an example, as in the factors (see
``kfac.py``); only weights, no bias augmentation: route biases to an elementwise rule
and call ``optimizer.attach(model)``. pytorch-optimizer has no EK-FAC.
"""
from ..dsl import (Rule, eigenvectors, every, grad, matmul, matrix_state, specialize_on_zero,
                   transpose)
from ._base import CatalogueOptimizer
from .kfac import kronecker_factors, running_decay, sgd_on


@specialize_on_zero("momentum")
def ekfac(lr=1e-2, damping=1e-3, stat_decay=0.95, momentum=0.9, weight_decay=0.0,
          factor_interval=10, eigen_interval=100, scale_interval=1):
    A_new, G_new, a, ds, n = kronecker_factors(stat_decay, factor_interval)
    QA = every(eigen_interval, eigenvectors(A_new),
               matrix_state("Q_A", ("cols", "cols"), init="identity"))
    QG = every(eigen_interval, eigenvectors(G_new),
               matrix_state("Q_G", ("rows", "rows"), init="identity"))
    a_proj, ds_proj = matmul(a, QA), matmul(ds, QG)  # (n, cols), (n, rows)
    s_batch = matmul(transpose(ds_proj * ds_proj), a_proj * a_proj) * n
    s = matrix_state("s", ("rows", "cols"), init="zeros")
    decay = running_decay(scale_interval, stat_decay)
    s_new = every(scale_interval, decay * s + (1 - decay) * s_batch, s)
    g_proj = matmul(matmul(transpose(QG), grad()), QA)
    direction = matmul(matmul(QG, g_proj / (s_new + damping)), transpose(QA))
    new_p, extra = sgd_on(direction, lr, momentum, weight_decay)
    return Rule(new_p, A=A_new, G=G_new, Q_A=QA, Q_G=QG, s=s_new, **extra)


class EKFAC(CatalogueOptimizer):
    """Eigenvalue-corrected K-FAC for nn.Linear / nn.Conv2d weights."""

    rule = ekfac
    source = "George et al. (2018), arXiv:1806.03884"
