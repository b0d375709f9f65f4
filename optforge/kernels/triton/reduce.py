"""Reduce stages on the triton backend: tile maps, result tables, the fixed-order combine.

A reduce kernel (``compiler/printers/triton_reduce.py``) covers each tensor's
``(rows, row length)`` view (or ``(numel, 1)`` for stages without row/column work)
with ROWS x COLS tiles. Tensors are grouped by COLS (the row length rounded up to a
power of two, at most ``COLS_MAX``; ROWS = block size / COLS): one launch per group,
so a bucket of 1-D biases and wide matrices does not pad the biases' rows to the
matrices' width. Tile ``(rt, ct)`` of tensor j writes

* its total to ``out_t[q, tile]`` (the tiles of one tensor are consecutive);
* its partial of row r to ``out_row[q, row_base_j + r * n_ct + ct]``;
* its partial of column c to ``out_col[q, col_base_j + c * n_rt + rt]``,

so the partials of one tensor, row or column are consecutive, and combining them is a
few gathers into (chunks, 32) matrices summed (or maxed) along their rows by torch
(``_levels``): a fixed order on every device, no atomics. The same inputs give the
same bits.
"""
from __future__ import annotations

import numpy as np
import torch

from .configs import FP_FUSION
from .layout import to_device

COLS_MAX = 256
WIDTH = 32  # partials per row of a combine level (see _levels)
_IDENTITY = {"sum": 0.0, "nonfinite": 0.0, "max": float("-inf")}


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _levels(lengths: np.ndarray, device, width: int = WIDTH) -> list[torch.Tensor]:
    """Index matrices reducing consecutive segments of the given lengths to one value each.

    Each level cuts every segment into chunks of at most ``width`` partials (one row of
    the matrix, short rows padded with the identity's position ``len(input)``), so the
    next level's segments are ``ceil(length / width)`` long: the matrices stay near the
    number of partials, whatever the mix of long and short segments. An empty segment
    becomes one identity. The order is fixed: the same partials give the same bits.
    """
    levels, lengths = [], np.asarray(lengths, dtype=np.int64)
    while len(lengths) and (lengths != 1).any():
        w = int(min(width, max(1, lengths.max())))
        start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        chunks = np.maximum(1, -(-lengths // w))
        seg = np.repeat(np.arange(len(lengths)), chunks)
        first = np.concatenate([[0], np.cumsum(chunks)[:-1]])
        pos = start[seg] + (np.arange(len(seg)) - first[seg]) * w
        idx = pos[:, None] + np.arange(w)[None, :]
        idx = np.where(idx < (start + lengths)[seg][:, None], idx, int(lengths.sum()))
        levels.append(to_device(torch.from_numpy(idx), device))
        lengths = chunks
    return levels


def index32_fits(views, rows: int, cols: int) -> bool:
    """Whether int32 offsets serve every tile of these (rows, row length) views: no lane
    (a last tile's rows and columns past the end included) reaches 2**31. Most tensors;
    the index math then halves."""
    return all((n_rows + rows) * n_cols + cols < 2**31 for n_rows, n_cols in views)


def cols_divisor(row_lengths) -> int:
    """The largest of 8, 4, 2, 1 dividing every row length (rows then start aligned: a
    hint for vector loads)."""
    return next(d for d in (8, 4, 2, 1) if all(n % d == 0 for n in row_lengths))


class TileGroup:
    """The tensors of one COLS: their tile table, partial buffers and combine indices.

    ``members`` come aligned tensors first; ``n_aligned`` of them have every address
    16-byte aligned. Their tiles (the first ``aligned_tiles``) run in one launch with
    the 128-bit hint, the others' in a launch of their own without it (``launches``),
    so one misaligned view does not make the group's loads scalar. The partials land
    where they would in one launch, and each tensor's combine depends only on the set
    of members (see ``_levels``), not their order: the same bits either way."""

    def __init__(self, members, view, cols: int, block: int, device, n_aligned: int = 0):
        self.members, self.cols, self.rows = members, cols, max(1, block // cols)
        tiles, t_len, r_len, c_len = [], [], [], []
        row_base = col_base = 0
        for j in members:
            n_rows, n_cols = view[j]
            n_rt, n_ct = -(-n_rows // self.rows), -(-n_cols // cols)
            for rt in range(n_rt):
                for ct in range(n_ct):
                    tiles.append((j, rt * self.rows, ct * cols,
                                  row_base + rt * self.rows * n_ct + ct, n_ct,
                                  col_base + ct * cols * n_rt + rt, n_rt))
            t_len.append(n_rt * n_ct)
            if len(t_len) == n_aligned:
                self.aligned_tiles = len(tiles)
            r_len.append(np.full(n_rows, n_ct))
            c_len.append(np.full(n_cols, n_rt))
            row_base += n_rows * n_ct
            col_base += n_cols * n_rt
        self.n_programs, self.row_total, self.col_total = len(tiles), row_base, col_base
        if n_aligned == 0:
            self.aligned_tiles = 0
        self.index32 = index32_fits([view[j] for j in members], self.rows, cols)
        self.cols_div = cols_divisor([view[j][1] for j in members])
        self.tile_tab = to_device(torch.tensor(tiles, dtype=torch.int64).reshape(-1), device)
        # a tensor's tiles, a row's column tiles, a column's row tiles: each consecutive
        self.t_idx = _levels(np.array(t_len), device)
        self.r_idx = _levels(np.concatenate(r_len), device)
        self.c_idx = _levels(np.concatenate(c_len), device)
        offsets = np.cumsum([0] + [view[j][0] for j in members])
        self.row_off = {j: (int(offsets[k]), int(offsets[k + 1])) for k, j in enumerate(members)}
        offsets = np.cumsum([0] + [view[j][1] for j in members])
        self.col_off = {j: (int(offsets[k]), int(offsets[k + 1])) for k, j in enumerate(members)}


    def launches(self) -> list[tuple[int, int, int]]:
        """(first tile, tiles, ALIGN) of each launch: aligned tiles, then the others."""
        split = [(0, self.aligned_tiles, 16), (self.aligned_tiles,
                                                self.n_programs - self.aligned_tiles, 1)]
        return [launch for launch in split if launch[1] > 0]


def combine(partials: torch.Tensor, op: str, levels: list[torch.Tensor]) -> torch.Tensor:
    """Consecutive segments of ``partials`` reduced in a fixed order (see ``_levels``)."""
    for index in levels:
        ext = torch.cat([partials, partials.new_full((1,), _IDENTITY[op])])
        partials = ext[index].amax(1) if op == "max" else ext[index].sum(1)
    return partials


class StageLayout:
    """Everything one reduce stage needs for one bucket shape: views, groups, constants."""

    def __init__(self, shapes, flat: bool, block: int, device):
        self.shapes = shapes
        real = [(s[0] if s else 1, (int(np.prod(s)) // s[0] if s and s[0] else 0) if s else 1)
                for s in shapes]
        self.real = real
        self.real_tab = torch.tensor(real, dtype=torch.int64).reshape(-1).to(device)
        numels = [int(np.prod(s)) if s else 1 for s in shapes]
        view = [(n, 1) for n in numels] if flat else real
        self.view_tab = torch.tensor(view, dtype=torch.int64).reshape(-1).to(device)
        self.view, self.block = view, block
        self._groups: dict[tuple[bool, ...], list[TileGroup]] = {}
        # (members, first tile, tiles, ALIGN) of each launch of the last run
        self.last_launches: list[tuple[tuple[int, ...], int, int, int]] = []
        self.device = device
        self._constants: dict[tuple, list[torch.Tensor]] = {}

    def groups(self, aligned: tuple[bool, ...] | None = None) -> list[TileGroup]:
        """The tile groups, members ordered aligned first (``aligned[j]``: tensor j's
        addresses are 16-byte aligned; None: none is). Built on the first run (the
        elementwise stage needs only shapes) and per alignment pattern."""
        aligned = aligned or (False,) * len(self.view)
        found = self._groups.get(aligned)
        if found is None:
            if len(self._groups) >= 8:  # addresses that keep changing alignment
                self._groups.clear()
            by_cols: dict[int, list[int]] = {}
            for j, (n_rows, n_cols) in enumerate(self.view):
                if n_rows * n_cols:
                    cols = min(_pow2(n_cols), COLS_MAX, self.block)
                    by_cols.setdefault(cols, []).append(j)
            found = self._groups[aligned] = [
                TileGroup(sorted(m, key=lambda j: not aligned[j]), self.view, c, self.block,
                          self.device, sum(aligned[j] for j in m))
                for c, m in sorted(by_cols.items())]
        return found

    def constant(self, op: str, scope: str) -> list[torch.Tensor]:
        """numel/ndim per tensor as 0-dim float32 tensors (the torch backend's partials)."""
        key = (op, scope)
        if key not in self._constants:
            values = []
            for s in self.shapes:
                numel = int(np.prod(s)) if s else 1
                rows = s[0] if s else 1
                n = {"tensor": numel, "group": numel, "row": numel // max(rows, 1),
                     "col": rows}[scope] if op == "numel" else len(s)
                values.append(torch.tensor(float(n), dtype=torch.float32, device=self.device))
            self._constants[key] = values
        return self._constants[key]

    def run(self, fn, ops, head_args: tuple, scalars, num_warps: int,
            aligned: tuple[bool, ...] | None = None) -> list[tuple]:
        """Launch the stage's kernel per group; each tensor's partials in ``ops`` order.
        ``aligned[j]``: tensor j's addresses (every role) are 16-byte aligned."""
        n = len(self.shapes)
        kinds = {"t": [r for r in ops if r.op not in ("numel", "ndim")
                       and r.scope in ("tensor", "group")],
                 "row": [r for r in ops if r.op not in ("numel", "ndim") and r.scope == "row"],
                 "col": [r for r in ops if r.op not in ("numel", "ndim") and r.scope == "col"]}
        found: dict[tuple[int, int], torch.Tensor] = {}  # (op index, tensor) -> value
        f32 = dict(dtype=torch.float32, device=self.device)
        self.last_launches = []
        for g in self.groups(aligned):
            out_t = torch.empty(max(1, len(kinds["t"]) * g.n_programs), **f32)
            out_row = torch.empty(max(1, len(kinds["row"]) * g.row_total), **f32)
            out_col = torch.empty(max(1, len(kinds["col"]) * g.col_total), **f32)
            for first, count, align in g.launches():
                self._launch(fn, head_args, g, first, count, align,
                             (out_t, out_row, out_col), scalars, num_warps)
            for kind, out, width, idx in (("t", out_t, g.n_programs, g.t_idx),
                                          ("row", out_row, g.row_total, g.r_idx),
                                          ("col", out_col, g.col_total, g.c_idx)):
                for q, r in enumerate(kinds[kind]):
                    values = combine(out[q * width:(q + 1) * width], r.op, idx)
                    for k, j in enumerate(g.members):
                        if kind == "t":
                            found[(ops.index(r), j)] = values[k]
                        else:
                            lo, hi = (g.row_off if kind == "row" else g.col_off)[j]
                            found[(ops.index(r), j)] = values[lo:hi]
        out = []
        for j in range(n):
            values = []
            for i, r in enumerate(ops):
                if r.op in ("numel", "ndim"):
                    values.append(self.constant(r.op, r.scope)[j])
                elif (i, j) in found:
                    values.append(found[(i, j)])
                else:  # an empty tensor: the identity, sized like its rows or columns
                    size = {"row": self.view[j][0], "col": self.view[j][1]}.get(r.scope)
                    shape = () if size is None else (size,)
                    values.append(torch.full(shape, _IDENTITY[r.op], **f32))
            out.append(tuple(values))
        return out

    def _launch(self, fn, head_args, g: TileGroup, first: int, count: int, align: int, outs,
                scalars, num_warps: int) -> None:
        """Tiles [first, first + count) of group ``g``: the tile table and ``out_t`` are
        passed from tile ``first`` on (program k is tile first + k; ``out_t``'s stride
        per reduction stays the group's tile count)."""
        addr_tab, n_tensors, rs_tab, raddr_tab = head_args
        out_t, out_row, out_col = outs
        self.last_launches.append((tuple(g.members), first, count, align))
        fn[(count,)](addr_tab, n_tensors, self.view_tab, rs_tab, raddr_tab,
                     g.tile_tab[7 * first:], out_t[first:], out_row, out_col, g.n_programs,
                     g.row_total, g.col_total, *scalars, ROWS=g.rows, COLS=g.cols,
                     ALIGN=align, INDEX32=g.index32, COLS_DIV=g.cols_div,
                     num_warps=num_warps, enable_fp_fusion=FP_FUSION)


def result_tables(plan, reduced, layout: StageLayout, scalar_pos, vector_pos, kinds,
                  device) -> tuple[torch.Tensor, torch.Tensor]:
    """(rs_tab, raddr_tab) from each parameter's finished results available so far."""
    n = len(reduced)
    available = len(reduced[0]) if reduced else 0
    cols = [i for i in scalar_pos if i < available]
    rs = torch.zeros((n, max(1, len(scalar_pos))), dtype=torch.float32, device=device)
    if cols and n:
        values = torch.stack([t[i].reshape(()) for t in reduced for i in cols])
        rs[:, :len(cols)] = values.to(device=device, dtype=torch.float32).view(n, len(cols))
    addresses = np.zeros((max(1, len(vector_pos)), max(1, n)), dtype=np.int64)
    for c, i in enumerate(vector_pos):
        if i >= available:
            break
        for j, t in enumerate(reduced):
            v, r = t[i], plan.reductions[i]
            want = layout.real[j][0] if kinds[i] == "row" else layout.real[j][1]
            if v.dtype != torch.float32 or v.device != device or not v.is_contiguous() \
                    or v.numel() != want:
                raise RuntimeError(
                    f"triton backend: result {r.result} ({r.op} over {r.scope} of {r.expr}) "
                    f"for parameter {j} is {tuple(v.shape)} {v.dtype} on {v.device}, expected "
                    f"{want} contiguous float32 values on {device}")
            addresses[c, j] = v.data_ptr()
    # queued, not waited for: no host sync between the stages
    return rs.reshape(-1), to_device(torch.from_numpy(addresses.reshape(-1)), device)
