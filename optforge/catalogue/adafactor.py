"""Adafactor — Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost"; torch.optim.Adafactor semantics (Zhai et al. 2022's beta2 schedule and
relative step size, update clipping by RMS at ``d``).

The second moment of a matrix is factored into one value per row and one per column
(row- and column-scoped states: rows + cols values, stored as torch stores ``row_var``
``(rows, 1)`` and ``col_var`` ``(1, cols)``) and estimated as their outer product over
the mean row value; a vector or scalar keeps it per element in ``row_var``, which torch
calls ``variance`` (checkpoints are translated both ways). Like torch, the step size is
``min(lr, 1/sqrt(t))`` times the parameter's RMS (at least ``eps[1]``), and the update is
divided by ``max(1, RMS(update) / d)``.

``AdafactorOriginal`` (adafactor_original.py) is the paper's own options as HF
transformers and pytorch-optimizer compute them.

Parameters with more than 2 dimensions are refused: torch (and the original Adafactor)
factor their last two dimensions once per index of the leading ones, while optforge's
row/column states are those of the ``(shape[0], -1)`` view, which would be another
optimizer under torch's name; reshape such weights to 2-D or give them another rule.
"""
from ..dsl import (Rule, grad, lerp, maximum, mean, minimum, ndim, norm, numel, param, rsqrt,
                   sqrt, state, step, where)
from ._adafactor_base import FLOAT32_EPS, FactoredOptimizer
from ._base import CatalogueOptimizer


def factored_moments(g2, weight, eps1):
    """(new row_var, new col_var, the second-moment estimate) from the squared gradient
    ``g2`` (with ``weight`` the EMA's weight of the new value): factored for a matrix,
    per element for a vector (its rows are its elements)."""
    row = lerp(state("row_var", scope="row"), mean(g2, over="row"), weight)
    col = lerp(state("col_var", scope="col"), mean(g2, over="col"), weight)
    factored = row * col / maximum(mean(row), eps1)
    return row, col, where(ndim() > 1, factored, row)


def adafactor(lr=1e-2, beta2_decay=-0.8, eps=(FLOAT32_EPS, 1e-3), d=1.0, weight_decay=0.0,
              maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    eps1, eps2 = eps
    rms = norm(p) / sqrt(numel())
    alpha = maximum(eps2, rms) * minimum(lr, 1 / sqrt(t))
    row, col, var = factored_moments(g * g, t**beta2_decay, eps1)
    u = g * rsqrt(maximum(var, eps1 * eps1))
    clip = maximum(1, norm(u) / (sqrt(numel()) * d))
    return Rule(p * (1 - lr * weight_decay) - (alpha / clip) * u, row_var=row, col_var=col)


class Adafactor(FactoredOptimizer, CatalogueOptimizer):
    """Factored second moments: rows + cols state for a matrix (torch.optim.Adafactor)."""

    rule = adafactor
    source = ("Shazeer & Stern (2018), arXiv:1804.04235; Zhai et al. (2022), "
              "arXiv:2106.04560; torch.optim.Adafactor")
