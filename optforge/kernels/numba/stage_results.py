"""Between the runtime's per-tensor results and the numba kernels' tables, both ways.

In: the runtime hands each parameter's finished results as torch tensors (0-dim for
tensor/group scopes, vectors for rows and columns); the kernels read scalar results
from one table ``rs[j, c]`` and row/column vectors through their addresses
``raddr[c, j]`` (no copy: the vectors are the launcher's own outputs, viewed by the
runtime). Per-scope math on them is done inside the kernels (see
``compiler/scope_use.py`` and ``compiler/printers/numba_scopes.py``).

Out: a reduce kernel's partials, combined per tensor/row/column (``reduce.py``), are
returned per parameter in the stage's order, as the torch launcher returns them.
"""
from __future__ import annotations

import numpy as np
import torch

from ...compiler.plan import KernelPlan
from ...compiler.abi import partial_groups, result_layout
from .jit import run_parallel
from .reduce import Layout, finish_cols, finish_rows, finish_tensors

_IDENTITY = {"max": -np.inf, "sum": 0.0, "nonfinite": 0.0}
# up to this many scalar results are read one by one (~0.2 us each) rather than stacked
# (~5 us however many): a small bucket's step is mostly such fixed costs
_READ_EACH = 24


class _StageShape:
    """What a reduce stage's finishing needs from the plan alone, worked out once: its
    partials by scope, which of them are maxima, and where each result comes from."""

    def __init__(self, stage):
        partials = partial_groups(stage)
        self.groups = {"t": partials.tensor, "row": partials.row, "col": partials.col}
        self.is_max = {k: np.array([r.op == "max" for r in v], dtype=np.bool_)
                       for k, v in self.groups.items()}
        # per result: ("shape", (op, scope)), ("t", q), ("row", q) or ("col", q)
        self.getters = [
            ("shape", (r.op, r.scope)) if r.op in ("numel", "ndim") else
            ("t", self.groups["t"].index(r)) if r.scope in ("tensor", "group") else
            (r.scope, self.groups[r.scope].index(r)) for r in stage.reductions]


class StageResults:
    def __init__(self, plan: KernelPlan):
        self.plan = plan
        self.scalar_pos, self.vector_pos = result_layout(plan, shapes_known=True)
        self.kind = [r.result_kind for r in plan.reductions]
        self._stages = [_StageShape(stage) for stage in plan.reduce_stages]

    def tables(self, reduced, params, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        """(rs, raddr) from each parameter's finished results (those available so far)."""
        cdt = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        n = len(params)
        available = len(reduced[0]) if reduced else 0
        scalar = [i for i in self.scalar_pos if i < available]
        rs = np.zeros((n, max(len(self.scalar_pos), 1)),
                      dtype=np.float64 if cdt == torch.float64 else np.float32)
        if scalar:
            cells = [t[i] for t in reduced for i in scalar]
            if len(cells) <= _READ_EACH:  # (rounded to cdt on assignment, as .to(cdt))
                rs[:, :len(scalar)] = np.array([c.item() for c in cells]).reshape(
                    n, len(scalar))
            else:
                values = torch.stack(cells).view(n, len(scalar))
                rs[:, :len(scalar)] = values.to(cdt).numpy()
        raddr = np.zeros((max(len(self.vector_pos), 1), n), dtype=np.int64)
        for c, i in enumerate(self.vector_pos):
            if i >= available:
                break
            column = 1 if self.kind[i] == "row" else 2
            for j, t in enumerate(reduced):
                v = t[i]
                if v.dtype != cdt or not v.is_contiguous() or v.device.type != "cpu" or \
                        v.numel() != layout.shapes[j, column]:
                    r = self.plan.reductions[i]
                    raise RuntimeError(
                        f"numba backend: result {r.result} ({r.op} over {r.scope} of "
                        f"{r.expr}) for parameter {j} is {tuple(v.shape)} {v.dtype}, expected "
                        f"{int(layout.shapes[j, column])} contiguous {cdt} values")
                raddr[c, j] = v.data_ptr()
        return rs, raddr

    def run_stage(self, stage: int, module, args: tuple, layout: Layout, params,
                  launch) -> list[tuple]:
        """Launch reduce stage ``stage`` and return each parameter's partials."""
        cdt = np.float64 if params[0].dtype == torch.float64 else np.float32
        shape = self._stages[stage]
        groups, is_max = shape.groups, shape.is_max
        nb = len(layout.blocks)
        out_t = np.empty((len(groups["t"]), nb), dtype=cdt)
        out_seg = np.empty((len(groups["row"]), layout.n_segments if groups["row"] else 0),
                           dtype=cdt)
        out_col = np.empty((len(groups["col"]), layout.col_total if groups["col"] else 0),
                           dtype=cdt)
        for q, r in enumerate(groups["col"]):
            out_col[q] = _IDENTITY[r.op]
        launch(module, module.REDUCE_STAGES[stage],
               args + (layout.seg_base, layout.col_base, out_t, out_seg, out_col),
               layout.total)
        per_tensor = torch.from_numpy(finish_tensors(out_t, layout.first_block, is_max["t"]))
        segments = torch.from_numpy(out_seg)
        rows = torch.from_numpy(run_parallel(
            finish_rows, out_seg, layout.seg_base, layout.first_block, layout.shapes,
            layout.row_off, layout.block, is_max["row"])) \
            if groups["row"] and not layout.all_flat else None
        cols = torch.from_numpy(run_parallel(
            finish_cols, out_col, layout.col_off, layout.col_parts, layout.shapes,
            layout.col_res_off, is_max["col"])) if groups["col"] else None
        getters = shape.getters
        if any(kind == "shape" for kind, _ in getters):
            values = {}
            for kind, key in getters:
                if kind == "shape" and key not in values:
                    values[key] = torch.from_numpy(
                        layout.shape_value(*key).astype(cdt)).unbind(0)
            getters = [(kind, values[q]) if kind == "shape" else (kind, q)
                       for kind, q in getters]
        # every tensor's results as 0-d views in one call (an index per value costs ~1 us)
        width = per_tensor.shape[1]
        cells = per_tensor.reshape(-1).unbind(0)
        out = []
        for j in range(len(params)):
            values = []
            for kind, q in getters:
                if kind == "shape":
                    values.append(q[j])
                elif kind == "t":
                    values.append(cells[j * width + q])
                elif kind == "row" and layout.flat_first[j] is not None:
                    first = layout.flat_first[j]
                    values.append(segments[q, first:first + int(layout.shapes[j, 1])])
                elif kind == "row":
                    values.append(rows[q, layout.row_off[j]:layout.row_off[j + 1]])
                else:
                    values.append(cols[q, layout.col_res_off[j]:layout.col_res_off[j + 1]])
            out.append(tuple(values))
        return out
