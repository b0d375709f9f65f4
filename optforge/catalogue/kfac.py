"""K-FAC — Martens & Grosse (2015), "Optimizing Neural Networks with Kronecker-factored
Approximate Curvature" (seed 002:68); convolutions as in Grosse & Martens (2016), KFC.

For the weight ``W`` (rows x cols = out x in*kh*kw) of an ``nn.Linear`` / ``nn.Conv2d``
layer with inputs ``a`` (n x cols, ``layer_input()``) and output gradients ``ds``
(n x rows, ``layer_output_grad()``), the layer's block of the Fisher is approximated by
``A (x) G`` with

    A = E[a a^T]            the EMA of  a^T a / n
    G = E[(n ds)(n ds)^T]   the EMA of  ds^T ds * n

``ds`` is the gradient of a *mean*-reduced loss, so it carries a 1/n factor: the
per-example output gradient is ``n ds_i``, hence the ``* n`` (for a sum-reduced loss,
divide ``lr`` and ``damping`` accordingly, or scale the loss). For ``nn.Conv2d`` the
rows of ``a`` and ``ds`` are the N*L (example, position) pairs and n = N*L, so
``A (x) G`` is |T| = L times KFC's Omega (x) Gamma: this rule equals KFC with ``lr / L``
and ``damping / L``.

The factors are updated every ``factor_interval`` steps (steps 1, 1+k, ...) with the
paper's decay ``min(1 - 1/k, stat_decay)`` at the k-th update (the first update is the
batch statistic itself, no bias towards the zero start); their damped inverses every
``inverse_interval`` steps. Damping is the paper's factored Tikhonov damping (Section
6.3): ``(A + pi sqrt(damping) I)^-1`` and ``(G + sqrt(damping) / pi I)^-1`` with
``pi = sqrt((tr(A) / cols) / (tr(G) / rows))`` (each trace floored at 1e-30 so a layer with
zero statistics gives no NaN); ``pi_damping=False`` uses ``sqrt(damping)`` on both. The
states hold ``(A / pi + sqrt(damping) I)^-1 = pi (A + pi sqrt(damping) I)^-1`` and
``(pi G + sqrt(damping) I)^-1`` (the pi factors cancel in the update; this keeps the
damping a plain number for the Cholesky inverse).

The step is SGD (torch.optim.SGD conventions, dampening 0) on the preconditioned
gradient: ``u = G^-1 grad A^-1 + weight_decay W``, ``buf = momentum buf + u``,
``W -= lr buf``. Martens & Grosse's adaptive step size and momentum (a 2-D quadratic
model), their Levenberg-Marquardt adaptation of the damping and KL clipping are not
included: ``lr``, ``momentum`` and ``damping`` are fixed hyperparameters.

Only weights: no bias augmentation (the paper appends a 1 to ``a``); give biases an
elementwise rule (``optforge.split_matrix_params(model, other=...)``) and call
``optimizer.attach(model)`` before training. pytorch-optimizer has no K-FAC.
"""
from ..dsl import (Rule, batch_mean, batch_size, diagonal, every, grad, inverse, layer_input,
                   layer_output_grad, matmul, matrix_state, maximum, minimum, param,
                   specialize_on_zero, sqrt, state, step, transpose)
from ._base import CatalogueOptimizer

TRACE_FLOOR = 1e-30  # a mean diagonal below this is taken as this (no 0/0 in pi)


def running_decay(interval, stat_decay):
    """The paper's EMA decay ``min(1 - 1/k, stat_decay)`` for the k-th update of a
    statistic refreshed on steps 1, 1+interval, ...: k = (t - 1) / interval + 1 there."""
    t = step()
    return minimum(stat_decay, 1 - interval / (t - 1 + interval))


def kronecker_factors(stat_decay, factor_interval):
    """The EMAs ``A`` (cols x cols) and ``G`` (rows x rows) after this step, and the
    layer's input / output-gradient batches ``a``, ``ds`` and batch size ``n``."""
    a, ds = layer_input(), layer_output_grad()
    n = batch_size(a)
    A = matrix_state("A", ("cols", "cols"), init="zeros")
    G = matrix_state("G", ("rows", "rows"), init="zeros")
    decay = running_decay(factor_interval, stat_decay)
    A_new = every(factor_interval, decay * A + (1 - decay) * matmul(transpose(a), a) / n, A)
    G_new = every(factor_interval, decay * G + (1 - decay) * matmul(transpose(ds), ds) * n, G)
    return A_new, G_new, a, ds, n


def mean_diagonal(m):
    """tr(m) / dim as a (1, 1) matrix, floored at TRACE_FLOOR."""
    return maximum(batch_mean(diagonal(m)), TRACE_FLOOR)


def sgd_on(update, lr, momentum, weight_decay):
    """The new parameter and momentum state: ``W -= lr buf`` with ``buf = momentum buf +
    update + weight_decay W``: torch SGD (dampening 0, first buffer = first update) on a
    preconditioned gradient."""
    p = param()
    d = update + weight_decay * p
    if momentum == 0:
        return p - lr * d, {}
    buf = momentum * state("momentum_buffer") + d
    return p - lr * buf, {"momentum_buffer": buf}


@specialize_on_zero("momentum")
def kfac(lr=1e-2, damping=1e-3, stat_decay=0.95, momentum=0.9, weight_decay=0.0,
         factor_interval=10, inverse_interval=100, pi_damping=True):
    A_new, G_new, _, _, _ = kronecker_factors(stat_decay, factor_interval)
    root = sqrt(damping)
    if pi_damping:
        pi = sqrt(mean_diagonal(A_new) / mean_diagonal(G_new))
        A_damped, G_damped = inverse(A_new / pi, root), inverse(G_new * pi, root)
    else:
        A_damped, G_damped = inverse(A_new, root), inverse(G_new, root)
    A_inv = every(inverse_interval, A_damped,
                  matrix_state("A_inv", ("cols", "cols"), init="identity"))
    G_inv = every(inverse_interval, G_damped,
                  matrix_state("G_inv", ("rows", "rows"), init="identity"))
    new_p, extra = sgd_on(matmul(matmul(G_inv, grad()), A_inv), lr, momentum, weight_decay)
    return Rule(new_p, A=A_new, G=G_new, A_inv=A_inv, G_inv=G_inv, **extra)


class KFAC(CatalogueOptimizer):
    """Kronecker-factored approximate curvature for nn.Linear / nn.Conv2d weights."""

    rule = kfac
    source = ("Martens & Grosse (2015), arXiv:1503.05671; Grosse & Martens (2016), "
              "arXiv:1602.01407")
