"""Largest / smallest entry of an ``(n, 1)`` column, and a matrix's infinity norm, in the
matrix DSL's existing vocabulary (MKOR's norm-based stabiliser, AdaFisher's Min-Max
normalisation).

The matrix DSL has no max/min over the entries of a matrix expression (``amax`` is a
per-parameter reduction, run before the matrix stage, and cannot read a column the
matrix stage computes), so the extrema are built from comparisons written as
arithmetic:

    d_ij = v_j - v_i                              (n, n), by broadcasting
    G_ij = (sign(d_ij) + |sign(d_ij)|) / 2        1 where v_j > v_i, else 0 (exactly)
    1    = diag((G + I) - G)                      an exact column of ones (G is 0/1)
    top  = 1 - sign(G 1)                          1 where no entry exceeds v_i
    max  = top^T v / top^T 1                      (1, 1); ties averaged, i.e. exact

``where()`` is not used: SymPy folds a Piecewise that sits inside a comparison into its
branches, which breaks the shapes of the matrix operations around it. The cost is an
``(n, n)`` temporary per column, on the steps the statistic is refreshed; a dedicated
``column_max`` op (see the report of issue 6) would make it O(n).
"""
from __future__ import annotations

from ..dsl import abs, add_diagonal, diagonal, matmul, sign, transpose


def _exceeds(v):
    """G (n, n): G_ij = 1 where v_j > v_i, else 0."""
    s = sign(transpose(v) - v)
    return (s + abs(s)) / 2


def ones_column(v):
    """A column of ones shaped like the ``(n, 1)`` column ``v``."""
    g = _exceeds(v)
    return diagonal(add_diagonal(g, 1.0) - g)


def column_max(v):
    """The largest entry of the ``(n, 1)`` column ``v``, as a ``(1, 1)`` matrix."""
    g = _exceeds(v)
    ones = diagonal(add_diagonal(g, 1.0) - g)
    top = transpose(1 - sign(matmul(g, ones)))
    return matmul(top, v) / matmul(top, ones)


def column_min(v):
    """The smallest entry of the ``(n, 1)`` column ``v``, as a ``(1, 1)`` matrix."""
    return -column_max(-v)


def infinity_norm(m):
    """max_i sum_j |m_ij| of a square matrix, as a ``(1, 1)`` matrix."""
    return column_max(matmul(abs(m), ones_column(diagonal(m))))
