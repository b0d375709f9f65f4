"""SM3 — Anil, Gupta, Koren & Singer (2019), "Memory-Efficient Adaptive Optimization";
pytorch-optimizer's dense SM3 (optional momentum and beta).

Adagrad whose per-element accumulator is replaced by one per row and one per column
(row- and column-scoped states, rows + cols values for a matrix): the element's
accumulator is the smaller of its row's and column's (plus g^2), and each row / column
keeps the largest of its elements'. A vector keeps one per element (its rows), as the
reference does. Parameters with more than 2 dimensions are refused: the reference keeps
one accumulator per dimension, optforge's row/column states cover the (shape[0], -1)
view.
"""
from ..dsl import (Rule, amax, grad, maximum, minimum, ndim, param, rsqrt, specialize_on_zero,
                   state, where)
from ._base import CatalogueOptimizer


@specialize_on_zero("momentum", "beta")
def sm3(lr=1e-1, momentum=0.0, beta=0.0, eps=1e-30):
    p, g = param(), grad()
    row, col = state("accumulator_0", scope="row"), state("accumulator_1", scope="col")
    cover = where(ndim() > 1, minimum(row, col), row)  # the tightest cover of the element
    nu = cover + g * g if beta == 0 else beta * cover + (1 - beta) * g * g
    row_max, col_max = amax(nu, over="row"), amax(nu, over="col")
    if beta != 0:  # an EMA of the cover keeps the running maximum
        row_max, col_max = maximum(row, row_max), maximum(col, col_max)
    u = rsqrt(nu + eps) * g
    new = {"accumulator_0": row_max, "accumulator_1": col_max}
    if momentum != 0:
        u = new["momentum_buffer"] = momentum * state("momentum_buffer") + (1 - momentum) * u
    return Rule(p - lr * u, **new)


class SM3(CatalogueOptimizer):
    """Adagrad with one accumulator per row and per column (rows + cols state)."""

    rule = sm3
    source = ("Anil, Gupta, Koren & Singer (2019), NeurIPS, arXiv:1901.11150; "
              "pytorch-optimizer's SM3")

    def check_parameter(self, p, labels, j: int, compiled) -> None:
        if p.dim() > 2:
            raise ValueError(
                f"SM3: {labels[j]} has shape {tuple(p.shape)}; the reference keeps one "
                "accumulator per dimension, optforge's row/column states those of the "
                "(shape[0], -1) view: reshape it to 2-D or give it another rule")
        super().check_parameter(p, labels, j, compiled)
