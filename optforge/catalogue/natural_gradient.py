"""Natural gradient with the damped empirical Fisher, solved exactly per layer — the
block-diagonal NGD of Amari (1998) with the empirical Fisher (seed 002:18, Thermodynamic
NGD, solves the same damped system on analog hardware), computed by the Woodbury
identity over the batch as in Ren & Goldfarb (2019), "Efficient Subsampled Gauss-Newton
and Natural Gradient Methods for Training Neural Networks".

For the weight ``W`` (rows x cols) of an ``nn.Linear`` layer with inputs ``a`` (n x cols)
and output gradients ``ds`` (n x rows) of a mean-reduced loss, the per-example gradients
are ``g_i = (n ds_i) a_i^T``; with ``U = [vec g_1 ... vec g_n]`` the layer's empirical
Fisher is ``F = U U^T / n`` (rows*cols square, never formed). The direction is

    (F + damping I)^-1 grad = (grad - U c) / damping,
    c = (n damping I + U^T U)^-1 U^T grad = (damping I + n K)^-1 w,

where ``K = (ds ds^T) * (a a^T)`` (n x n, elementwise product of the two Gram matrices:
``<g_i, g_j> = n^2 K_ij``), ``w_i = ds_i^T grad a_i`` and ``U c = n ds^T (c * a)``. The
cost is O(n^2 (rows + cols) + n^3) per layer and step, so the batch should be modest.

How it differs from K-FAC (``kfac.py``): no Kronecker approximation (the exact empirical
Fisher block of the layer), no running averages (this batch's Fisher only, recomputed
every step), exact Tikhonov damping ``F + damping I`` (not split between two factors),
and the empirical Fisher (observed gradients) rather than the Fisher of the model's
predictive distribution. The step is SGD on the direction (torch conventions, dampening
0): ``buf = momentum buf + direction + weight_decay W``, ``W -= lr buf`` (``momentum=0``
by default: plain damped NGD).

Numerics: the direction is ``grad - U c`` divided by ``damping``, and ``grad`` lies
(nearly) in the span of the g_i, so the float32 subtraction cancels digits. With ``c``
from an LU solve the direction's relative error stays within a few float32 ulps times
the condition number ``(lambda_max(F) + damping) / damping`` (measured at most 2.0 ulps
x cond for damping 1e-2 to 1e-4, mlp and conv layers; tests check 4): the float32
gradient itself is only known to an ulp, so this is what the problem's conditioning
allows. Pick the damping with that in mind (1e-3 lambda_max(F) costs ~1e3 ulps).

For ``nn.Conv2d`` each (example, position) row of the unfolded input counts as an
example: the per-position Fisher, not the per-example one. Only weights (no bias
augmentation); route biases to an elementwise rule and call ``optimizer.attach(model)``.
pytorch-optimizer has no natural-gradient optimizer (its FAdam keeps a diagonal Fisher).
"""
from ..dsl import (Rule, add_diagonal, batch_size, diagonal, grad, layer_input,
                   layer_output_grad, matmul, solve, specialize_on_zero, transpose)
from ._base import CatalogueOptimizer
from .kfac import sgd_on


@specialize_on_zero("momentum")
def natural_gradient(lr=0.1, damping=1e-2, momentum=0.0, weight_decay=0.0):
    g = grad()
    a, ds = layer_input(), layer_output_grad()
    n = batch_size(a)
    gram = matmul(ds, transpose(ds)) * matmul(a, transpose(a))  # K, (n, n)
    w = diagonal(matmul(matmul(ds, g), transpose(a)))  # U^T grad / n, (n, 1)
    # LU solve, not inverse() then matmul: the float32 product with an explicit inverse
    # loses digits before the subtraction below, which then loses more (error ~ cond^2)
    c = solve(add_diagonal(gram * n, damping), w)
    direction = (g - n * matmul(transpose(ds), c * a)) / damping
    new_p, extra = sgd_on(direction, lr, momentum, weight_decay)
    return Rule(new_p, **extra)


class NaturalGradient(CatalogueOptimizer):
    """Damped empirical-Fisher natural gradient, exact per layer (Woodbury over the batch)."""

    rule = natural_gradient
    source = "Amari (1998); Ren & Goldfarb (2019), arXiv:1906.02353"
