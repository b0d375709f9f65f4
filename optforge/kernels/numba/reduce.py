"""Reduce stages on the numba backend: the bucket's layout tables and the finishing combine.

A reduce kernel (``compiler/printers/numba_reduce.py``) writes partials, never a
finished value:

* ``out_t[q, b]``: tensor/group reduction q over block b;
* ``out_seg[q, s]``: row reduction q over row segment s (the part of one row inside
  one block; the segments of block b start at ``seg_base[b]``, those of one row are
  consecutive);
* ``out_col[q, pos]``: column reduction q per block and column (rows shorter than a
  block: one row of partials per block) or per element (rows of a block or longer:
  each block holds one element per column, so the element is the partial).

The functions here combine them per tensor, per row and per column, sequentially in
block order: with the fixed block decomposition (``BLOCK`` elements, independent of
the thread count) the same inputs give the same bits. The torch-backend contract is
kept: the launcher returns each tensor's partials (group scopes are combined across
tensors and buckets by ``runtime/reductions.finish``).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .helpers import fmax
from .jit import njit_cached


@njit_cached(nogil=True)
def finish_tensors(out_t, first_block, is_max):
    """(ops, blocks) partials -> (tensors, ops): each tensor's blocks in order."""
    n_tensors = first_block.shape[0] - 1
    res = np.empty((n_tensors, out_t.shape[0]), out_t.dtype)
    for j in range(n_tensors):
        for q in range(out_t.shape[0]):
            acc = out_t.dtype.type(-np.inf) if is_max[q] else out_t.dtype.type(0.0)
            for b in range(first_block[j], first_block[j + 1]):
                acc = fmax(acc, out_t[q, b]) if is_max[q] else acc + out_t[q, b]
            res[j, q] = acc
    return res


@njit_cached(parallel=True, nogil=True)
def finish_rows(out_seg, seg_base, first_block, shapes, row_off, block, is_max):
    """(ops, segments) partials -> (ops, all rows): each row's segments in order; the
    rows of tensors whose rows hold one element are left unset (``Layout.flat_first``)."""
    res = np.empty((out_seg.shape[0], row_off[-1]), out_seg.dtype)
    for j in prange(shapes.shape[0]):
        rows, length, fb = shapes[j, 1], shapes[j, 2], first_block[j]
        if length == 1:
            continue  # rows of one element: their values are the segments (Layout.flat_first)
        for r in range(rows):
            for q in range(out_seg.shape[0]):
                acc = out_seg.dtype.type(-np.inf) if is_max[q] else out_seg.dtype.type(0.0)
                if length > 0:
                    b0 = (r * length) // block
                    b1 = ((r + 1) * length - 1) // block
                    first = seg_base[fb + b0] + r - (b0 * block) // length
                    for t in range(b1 - b0 + 1):
                        x = out_seg[q, first + t]
                        acc = fmax(acc, x) if is_max[q] else acc + x
                res[q, row_off[j] + r] = acc
    return res


@njit_cached(parallel=True, nogil=True)
def finish_cols(out_col, col_off, parts, shapes, res_off, is_max):
    """(ops, partial rows x columns) -> (ops, all columns): partial rows in order."""
    res = np.empty((out_col.shape[0], res_off[-1]), out_col.dtype)
    for j in prange(shapes.shape[0]):
        length = shapes[j, 2]
        for q in range(out_col.shape[0]):
            o = res_off[j]
            for c in range(length):
                res[q, o + c] = out_col.dtype.type(-np.inf) if is_max[q] else \
                    out_col.dtype.type(0.0)
            for k in range(parts[j]):
                base = col_off[j] + k * length
                for c in range(length):
                    x = out_col[q, base + c]
                    res[q, o + c] = fmax(res[q, o + c], x) if is_max[q] else res[q, o + c] + x
    return res


class Layout:
    """Everything a bucket's reduce kernels need that depends only on its shapes."""

    def __init__(self, shapes: tuple[tuple[int, ...], ...], blocks: np.ndarray, block: int):
        self.block = block
        numel = np.array([int(np.prod(s)) if s else 1 for s in shapes], dtype=np.int64)
        rows = np.array([s[0] if s else 1 for s in shapes], dtype=np.int64)
        length = np.where(rows > 0, numel // np.maximum(rows, 1), 0)
        ndim = np.array([len(s) for s in shapes], dtype=np.int64)
        self.shapes = np.stack([numel, rows, length, ndim], axis=1).reshape(-1, 4)
        self.total = int(numel.sum())  # elements of the bucket
        self.blocks = blocks
        per = (numel + block - 1) // block
        self.first_block = np.concatenate([[0], np.cumsum(per)]).astype(np.int64)
        j, lo, hi = blocks[:, 0], blocks[:, 1], blocks[:, 2]
        lb = length[j]
        nseg = (hi - 1) // np.maximum(lb, 1) - lo // np.maximum(lb, 1) + 1
        self.seg_base = np.concatenate([[0], np.cumsum(nseg)[:-1]]).astype(np.int64) \
            if len(blocks) else np.zeros(0, np.int64)
        self.n_segments = int(nseg.sum())
        self.row_off = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        # rows of one element (1-D tensors): the reduce kernels write each row's finished
        # value as its only segment, the tensor's segments consecutive from its first
        # one, so its row results are read there (finish_rows leaves them out: no copy)
        self.flat_first = [int(self.seg_base[self.first_block[j]]) if length[j] == 1
                           else None for j in range(len(shapes))]
        self.all_flat = all(first is not None for first in self.flat_first)
        self.col_res_off = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
        wide = length >= block
        self.col_parts = np.where(wide, rows, per).astype(np.int64)
        sizes = self.col_parts * length
        self.col_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) \
            if len(shapes) else np.zeros(0, np.int64)
        self.col_total = int(sizes.sum())
        local = np.arange(len(blocks), dtype=np.int64) - self.first_block[j]
        base = self.col_off[j] + np.where(wide[j], lo, local * lb)
        self.col_base = np.stack([base, wide[j].astype(np.int64)], axis=1).reshape(-1, 2)

    def shape_value(self, op: str, scope: str) -> np.ndarray:
        """numel/ndim per tensor, as the torch backend's partials give them."""
        column = 3 if op == "ndim" else {"tensor": 0, "group": 0, "row": 2, "col": 1}[scope]
        return self.shapes[:, column]
