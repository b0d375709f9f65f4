"""AdaFisher and AdaFisherW — Martins Gomes, Zhang, Belilovsky, Wolf & Hosseini (ICLR 2025),
"AdaFisher: Adaptive Second Order Optimization via Fisher Information", arXiv:2405.16397
(seed 002:51): Adam's first moment divided by a diagonal Kronecker-factored Fisher.

For the weight ``W`` (rows x cols = out x in*kh*kw) of an ``nn.Linear`` / ``nn.Conv2d``
layer with inputs ``a`` (n x cols, ``layer_input()``) and output gradients ``ds``
(n x rows, ``layer_output_grad()``), the layer's Fisher block ``H (x) S`` (K-FAC's two
factors) is replaced by the Kronecker product of the two *diagonals*, which is itself
diagonal, one number per weight entry. Algorithm 1 with Eqs. (3)-(4), per weight:

    h = diag(E[a a^T]) = batch mean of a * a            (cols, 1)
    s = diag(E[ds ds^T]) = batch mean of ds * ds        (rows, 1)
    H <- gamma H + (1 - gamma) h,   S <- gamma S + (1 - gamma) s    (Eq. 3)
    F = minmax(S) minmax(H)^T + damping                 (rows, cols)   (Eq. 4)
    m <- beta m + (1 - beta) g,     W <- W - lr (m / (1 - beta^t)) / F

with ``minmax(v) = (v - min v) / (max v - min v + minmax_eps)`` (entries in [0, 1]). The
outer product ``S' H'^T`` is the Kronecker product ``H' (x) S'`` laid out as the 2-D view
of the weight (row i = output i, column j = input j), so ``F`` is one matmul of two
columns, formed in the matrix stage; the momentum and the update stay elementwise. There
is no square root: ``F`` plays the part of Adam's ``sqrt(v)`` (the paper argues for this in
its appendix). AdaFisher adds ``weight_decay W`` to the gradient before the momentum (L2,
as the official code does); AdaFisherW decouples it, ``W <- W - lr (m_hat / F +
weight_decay W)``.

Algorithm 1 starts from ``F = I``, i.e. ``H = S = 1``; after j refreshes that seed is the
constant column ``gamma^j``, which min-max (shift-invariant) removes exactly. The states
here start at 0 instead: the same ``F``, and in float32 a small ``h`` (``s`` of a
mean-reduced loss is ~1e-5) no longer sits under a 1 that rounds its differences away
(measured after one refresh: 8e-4 relative error in ``S_norm`` with the seed, 8e-8
without).

The statistics are refreshed on steps 1, 1+k, ... (``k = factor_interval``; Algorithm 1
refreshes every step, k = 1). The normalised columns are stored (``H_norm``, ``S_norm``)
so the other steps cost one outer product; the column min/max is written with
comparisons (``_column_extrema``) and costs an (n, n) temporary per column per refresh.

Where the paper and the official code (github.com/AtlasAnalyticsLab/AdaFisher,
optimizers/AdaFisher.py) differ, the paper is followed by default:

* Eq. (3) is an ordinary EMA ``gamma old + (1 - gamma) new``; the code computes
  ``0.1 gamma old + 0.01 gamma new`` (0.08 / 0.008 at gamma = 0.8, earlier versions wrote
  the same numbers as ``gammas = [0.92, 0.008]``).
* The paper normalises the averaged factors (Algorithm 1 averages, then forms F with
  Eq. 4's min-max); the code normalises each batch's diagonals and averages those, so
  once the seed 1 has decayed (0.08^j after j refreshes) ``F - damping`` lives in
  ``[0, 0.0087^2] = [0, 7.6e-5]`` at gamma = 0.8: with damping 1e-3 the step is within 8%
  of ``(lr / damping) m_hat``.
* The code refreshes the statistics every ``TCov = 100`` steps (the setting of its
  experiment logs); here that is ``factor_interval=100``.

``official_ema=True`` gives the code's factors instead (normalise each batch, then
``H <- 0.1 gamma H + 0.01 gamma minmax(h)`` from H = 1, no normalisation after; S alike).
Shared by both: ``minmax_eps = 1e-6`` as in the code, and the code's statistic scales
(``a`` and ``ds`` as recorded, so ``s`` carries the 1/n^2 of a mean-reduced loss; min-max
removes any overall scale, so only the epsilon sees it). The code's replacement of
infinite statistics (+inf -> 1, -inf -> 0) is not done.

Only weights: the official code appends a constant 1 to ``a`` so a layer's bias shares its
Fisher (the bias's entry of ``h`` is 1 and takes part in the min-max of ``h``), gives
BatchNorm2d / LayerNorm their own small factors and every other parameter ``F = 1``. Here
the bias does not enter the min-max (so a biased layer's ``H_norm`` can differ from the
code's), and biases, norms and other parameters go to another rule
(``optforge.split_matrix_params(model, other="AdamW")``); call ``optimizer.attach(model)``
before training. pytorch-optimizer has no AdaFisher.
"""
from ..dsl import (Rule, batch_mean, every, grad, layer_input, layer_output_grad, matmul,
                   matrix_state, param, state, step, transpose)
from ._base import CatalogueOptimizer
from ._column_extrema import column_max, column_min


def min_max(v, eps):
    """Eq. (4)'s normalisation of an (n, 1) column into [0, 1]."""
    low = column_min(v)
    return (v - low) / (column_max(v) - low + eps)


def fisher_diagonal(gamma, damping, factor_interval, minmax_eps, official_ema):
    """``F`` (rows, cols) for this step and the matrix states' new values."""
    a, ds = layer_input(), layer_output_grad()
    h, s = batch_mean(a * a), batch_mean(ds * ds)
    k = factor_interval
    if official_ema:
        H = matrix_state("H", ("cols", 1), init=1.0)
        S = matrix_state("S", ("rows", 1), init=1.0)
        H_new = every(k, 0.1 * gamma * H + 0.01 * gamma * min_max(h, minmax_eps), H)
        S_new = every(k, 0.1 * gamma * S + 0.01 * gamma * min_max(s, minmax_eps), S)
        return matmul(S_new, transpose(H_new)) + damping, {"H": H_new, "S": S_new}
    # Algorithm 1's seed H = S = 1 adds gamma^j * 1 after j refreshes, and min-max is blind to
    # a constant shift: starting at 0 gives the same F without float32 losing h under the 1
    H = matrix_state("H", ("cols", 1), init="zeros")
    S = matrix_state("S", ("rows", 1), init="zeros")
    H_new = every(k, gamma * H + (1 - gamma) * h, H)
    S_new = every(k, gamma * S + (1 - gamma) * s, S)
    H_norm = every(k, min_max(H_new, minmax_eps), matrix_state("H_norm", ("cols", 1), init=1.0))
    S_norm = every(k, min_max(S_new, minmax_eps), matrix_state("S_norm", ("rows", 1), init=1.0))
    return (matmul(S_norm, transpose(H_norm)) + damping,
            {"H": H_new, "S": S_new, "H_norm": H_norm, "S_norm": S_norm})


def adafisher_step(decoupled, lr, beta, gamma, damping, weight_decay, factor_interval,
                   minmax_eps, official_ema):
    F, factors = fisher_diagonal(gamma, damping, factor_interval, minmax_eps, official_ema)
    p, g = param(), grad()
    if not decoupled:
        g = g + weight_decay * p
    m = beta * state("exp_avg") + (1 - beta) * g
    direction = m / (1 - beta ** step()) / F
    if decoupled:
        direction = direction + weight_decay * p
    return Rule(p - lr * direction, exp_avg=m, **factors)


def adafisher(lr=1e-3, beta=0.9, gamma=0.8, damping=1e-3, weight_decay=0.0, factor_interval=1,
              minmax_eps=1e-6, official_ema=False):
    return adafisher_step(False, lr, beta, gamma, damping, weight_decay, factor_interval,
                          minmax_eps, official_ema)


def adafisherw(lr=1e-3, beta=0.9, gamma=0.8, damping=1e-3, weight_decay=0.0, factor_interval=1,
               minmax_eps=1e-6, official_ema=False):
    return adafisher_step(True, lr, beta, gamma, damping, weight_decay, factor_interval,
                          minmax_eps, official_ema)


class AdaFisher(CatalogueOptimizer):
    """Bias-corrected momentum over a min-max normalised diagonal Kronecker Fisher."""

    rule = adafisher
    source = ("Martins Gomes et al. (2025), arXiv:2405.16397 (ICLR 2025), Algorithm 1, "
              "Eqs. 3-4; github.com/AtlasAnalyticsLab/AdaFisher with official_ema=True")


class AdaFisherW(CatalogueOptimizer):
    """AdaFisher with decoupled weight decay."""

    rule = adafisherw
    source = ("Martins Gomes et al. (2025), arXiv:2405.16397 (ICLR 2025), Algorithm 1 "
              "(AdaFisherW); github.com/AtlasAnalyticsLab/AdaFisher with official_ema=True")
