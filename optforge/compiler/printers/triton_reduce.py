"""Prints a multi-stage plan for the triton backend: one ``@triton.jit`` kernel per reduce
stage, plus the elementwise kernel reading the finished results.

Reduce kernels work on 2-D *tiles* of the ``(rows, row length)`` view of each tensor:
program ``pid`` reads the tile ``[row0, row0 + ROWS) x [col0, col0 + COLS)`` of tensor
``tid`` (from the host's tile table), so a row's elements and a column's elements are
axes of the tile, whatever the row length: ``tl.sum(x, 1)`` is the tile's partial of
each of its rows, ``tl.sum(x, 0)`` of each of its columns, both sums of the tensor's.
A stage with no row/column reduction and no row/column value uses the flat view
``(numel, 1)`` (``COLS == 1``: contiguous addresses along the tile). Every access is
masked; lanes outside the tensor contribute the identity (0, or -inf for max).

Partials go to scratch buffers (``out_t``: per tile; ``out_row``: per row and column
tile; ``out_col``: per column and row tile, each at the position the tile table gives)
and the launcher combines them in a fixed order (``kernels/triton/reduce.py``): no
atomics, so the same inputs give the same bits.

Finished results reach every kernel as a per-tensor table of scalar results
(``rs_tab[tid * NS + c]``: tensor and group scopes, numel, ndim) and a table of
addresses of row/column result vectors (``raddr_tab[c * n_tensors + tid]``); the
per-scope math (``m0 = ...``) is computed in the kernels: scalar values once per
program, row/column values per element from the gathered results. Chosen as in the
numba backend, and over host-computed per-scope tables: no extra launch (or torch op per
scope value) between the stages, and the row/column vectors gathered are the results
themselves (``rows + cols`` floats per tensor, cache-resident), not a per-element
table. Not measured: the interpreter's timings say nothing about a GPU's.
"""
from __future__ import annotations

from ..abi import launcher_seeded, partial_groups, result_layout
from ..plan import KernelPlan, ReduceKind, ReduceResult, ResultKind, Rounding, ScopeTemp
from ..scope_use import ScopeUse, elementwise_exprs, stage_exprs
from ..templates import render
from .triton import (TritonPrinter, kernel_name, output_lines, pointer_rows, render_module,
                     scalar_casts, store_lines)


class StagePrinter(TritonPrinter):
    """The triton printer, also printing reduction results and per-scope values as names."""

    SYMBOLS = TritonPrinter.SYMBOLS + (ReduceResult, ScopeTemp)


class Scopes(ScopeUse):
    """Where the triton kernels read the results and per-scope values ``exprs`` need."""

    def __init__(self, plan: KernelPlan, pr: StagePrinter, exprs):
        super().__init__(plan, exprs)
        self.pr = pr
        scalars, vectors = result_layout(plan, shapes_known=False)
        self.n_scalars = len(scalars)
        self.column = {i: c for c, i in enumerate(scalars)} | {i: c for c, i in enumerate(vectors)}

    def vector(self, s) -> bool:
        return self.kind[s] != ResultKind.SCALAR

    def program_lines(self) -> list[str]:
        """Scalar results and values, and the pointers of vector results, for tensor tid."""
        out = []
        for s in self.order:
            if self.result(s) is not None:
                c = self.column[self.position(s)]
                if self.vector(s):
                    out.append(f"ptr_{s.name} = tl.load(raddr_tab + {c} * n_tensors + tid)"
                               ".to(tl.pointer_type(tl.float32))")
                else:
                    out.append(f"{s.name} = tl.load(rs_tab + tid * {self.n_scalars} + {c})")
            elif not self.vector(s):
                out.append(f"{s.name} = {self.pr.doprint(self.value(s))}")
        return out

    def element_lines(self, row: str, col: str, row_mask: str, col_mask: str,
                      rows: str = "gather") -> list[str]:
        """Row/column results at indices ``row``/``col``; the values using them.

        ``rows`` says how a full block reads row results: "gather" per element at
        ``row``; "one", the block lies inside row ``row0`` (loaded once and broadcast:
        a block of one value, so the values computed from them are one SSA value per
        thread, computed once; types match the other paths, as triton's if requires);
        "two", the block meets rows ``row0`` and ``row0 + 1`` (see ``_row_pair``)."""
        out = self._row_pair() if rows == "two" else []
        for s in self.order:
            if not self.vector(s) or (rows == "two" and self.kind[s] == ResultKind.ROW):
                continue
            if self.result(s) is None:
                out.append(f"{s.name} = {self.pr.doprint(self.value(s))}")
                continue
            by_row = self.kind[s] == ResultKind.ROW
            index, mask = (row, row_mask) if by_row else (col, col_mask)
            masked = f", mask={mask}, other=0.0" if mask else ""
            if by_row and rows == "one":
                out.append(f"{s.name} = tl.load(ptr_{s.name} + row0)"
                           " + tl.zeros([BLOCK_SIZE], tl.float32)")
            else:
                out.append(f"{s.name} = tl.load(ptr_{s.name} + {index}{masked})")
        return out

    def _row_pair(self) -> list[str]:
        """Row results and row values of rows ``row0`` and ``row0 + 1``, each loaded or
        computed once per program (scalars ``<name>_0``, ``<name>_1``); each element
        takes its row's (``past``: it lies past row0's end). No division, no gather."""
        rows = [s for s in self.order if self.kind[s] == ResultKind.ROW]
        out = []
        for k in (0, 1):
            renamed = {s: ScopeTemp(f"{s.name}_{k}") for s in rows}
            for s in rows:
                out.append(f"{s.name}_{k} = tl.load(ptr_{s.name} + row0 + {k})"
                           if self.result(s) is not None else
                           f"{s.name}_{k} = {self.pr.doprint(self.value(s).xreplace(renamed))}")
        return out + [f"{s.name} = tl.where(past, {s.name}_1, {s.name}_0)" for s in rows]


def _elementwise(plan, dtypes, rounding, interpreted) -> dict:
    pr = StagePrinter(plan.rule_name, dtypes.get("p"))  # (p's dtype wherever p is stored)
    scopes = Scopes(plan, pr, elementwise_exprs(plan))
    pointer_lines = pointer_rows(plan, dtypes, interpreted)
    # the block's first row and column: one 64-bit division per program
    head = ["n_cols = tl.load(shape_tab + 2 * tid + 1)", "row0 = start // n_cols",
            "col0 = start - row0 * n_cols"] if scopes.uses_vectors else []
    head += scopes.program_lines()
    temps = [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    outputs = output_lines(pr, plan)

    def body(masked: bool, index: list[str], indent: str = "        ",
             rows: str = "gather") -> str:
        m = "mask" if masked else ""
        lines = ([pr.load(r.name, dtypes[r.name], masked) for r in plan.loads] + index
                 + scopes.element_lines("row", "col", m, m, rows) + temps + outputs
                 + store_lines(pr, plan, dtypes, rounding, masked))
        return "\n".join(indent + line for line in lines)

    pointers = "\n".join(pointer_lines + ["    " + x for x in head])
    if not scopes.uses_vectors:
        return dict(pointers=pointers, full=body(False, []), tail=body(True, []))
    return dict(pointers=pointers, full=_row_paths(body), tail=_tail_rows(body))


# Where an element of a block lies in its tensor's (rows, row length) view, from the
# block's first row and column (row0, col0: once per program; per element a 64-bit
# division would be a ~70-instruction subroutine):
# - a block inside one row (column results are read at col);
INSIDE_ONE_ROW = ["row = row0 + tl.zeros([BLOCK_SIZE], tl.int64)",
                  "col = col0 + tl.arange(0, BLOCK_SIZE).to(tl.int64)"]
# - rows at least a block long: the block meets at most two rows (compare and select);
ACROSS_ONE_END = ["split = tl.minimum(n_cols - col0, BLOCK_SIZE).to(tl.int32)",
                  "past = tl.arange(0, BLOCK_SIZE) >= split",
                  "cl = col0 + tl.arange(0, BLOCK_SIZE).to(tl.int64)",
                  "row = row0 + past.to(tl.int64)",
                  "col = tl.where(past, cl - n_cols, cl)"]
# - shorter rows: offsets from row0's start are below 2 * BLOCK_SIZE, 32-bit division.
SHORT_ROWS = ["l32 = col0.to(tl.int32) + tl.arange(0, BLOCK_SIZE)",
              "n32 = n_cols.to(tl.int32)",
              "q32 = l32 // n32",
              "row = row0 + q32.to(tl.int64)",
              "col = (l32 - q32 * n32).to(tl.int64)"]


def _row_paths(body) -> str:
    """The full-block path of a kernel reading row/column results, in three cases: the
    block inside one row (row results loaded once, no index math), the block across one
    row end (two rows' results loaded once, a select per element) and rows shorter than
    the block (a 32-bit division and a gather of row results per element)."""
    inner = " " * 12
    return "\n".join([
        "        if col0 + BLOCK_SIZE <= n_cols:",
        body(False, INSIDE_ONE_ROW, inner, "one"),
        "        elif n_cols >= BLOCK_SIZE:",
        body(False, ACROSS_ONE_END, inner, "two"),
        "        else:",
        body(False, SHORT_ROWS, inner)])


def _tail_rows(body) -> str:
    """The masked path: each element's row and column as in the full path's cases
    (no 64-bit division), row results gathered where the element exists."""
    inner = " " * 12
    return "\n".join([
        "        if n_cols >= BLOCK_SIZE:", *(inner + x for x in ACROSS_ONE_END),
        "        else:", *(inner + x for x in SHORT_ROWS),
        body(True, [])])


_IDENTITY = {ReduceKind.SUM: "0.0", ReduceKind.NONFINITE: "0.0", ReduceKind.MAX: "float('-inf')"}


def _reduce_all(op: str, x: str, axis: int | None) -> str:
    if op == ReduceKind.MAX:
        return f"amax_axis({x}, {axis})" if axis is not None else f"amax_all({x})"
    return f"tl.sum({x}, {axis})" if axis is not None else f"tl.sum(tl.sum({x}, 1), 0)"


# where each group of partials goes: (output, its index expression, the axis reduced, mask)
_PARTIALS = {
    "tensor": ("out_t + {q} * n_programs + pid", None, ""),
    "row": ("out_row + {q} * row_total + rpos + ri * rstride", 1, ", mask=row0 + ri < n_rows"),
    "col": ("out_col + {q} * col_total + cpos + ci * cstride", 0, ", mask=col0 + ci < n_cols"),
}


def _reduce_body(plan, stage, pr, scopes, dtypes, masked: bool) -> list[str]:
    """One path of a reduce kernel: loads, values, and each reduction's partials."""
    m = "mask" if masked else ""
    lines = [pr.load(r.name, dtypes[r.name], masked) for r in stage.loads]
    lines += scopes.element_lines("rr", "cc", m and "rmask", m and "cmask")
    lines += [f"{s.name} = {pr.doprint(e)}" for s, e in stage.temps]
    groups = partial_groups(stage)
    where = {id(r): (kind, q) for kind in _PARTIALS
             for q, r in enumerate(getattr(groups, kind))}
    for k, r in enumerate(r for r in stage.reductions if not r.op.from_shape):
        x = pr.doprint(r.expr)
        if r.op == ReduceKind.NONFINITE:  # NaN and +-inf: x - x is not 0
            x = f"tl.where(({x}) - ({x}) == 0.0, 0.0, 1.0)"
        lines.append(f"x{k} = tl.where(mask, {x} + zero, {_IDENTITY[r.op]})" if masked
                     else f"x{k} = {x} + zero")
        kind, q = where[id(r)]
        target, axis, bound = _PARTIALS[kind]
        lines.append(f"tl.store({target.format(q=q)}, {_reduce_all(r.op, f'x{k}', axis)}"
                     f"{bound})")
    return lines


def _reduce(plan, dtypes, name, index, interpreted) -> str:
    stage = plan.reduce_stages[index]
    pr = StagePrinter(plan.rule_name)
    scopes = Scopes(plan, pr, stage_exprs(plan, index))
    head = pointer_rows(plan, dtypes, interpreted, {r.name for r in stage.loads})
    head = [line.strip() for line in head] + scopes.program_lines()

    def path(masked):  # (a stage of only numel/ndim reduces nothing here)
        lines = _reduce_body(plan, stage, pr, scopes, dtypes, masked) or ["pass"]
        return "\n".join("        " + line for line in lines)
    return render("triton_reduce_kernel.py", kernel=f"{name}_r{index}", index=str(index),
                  args="".join(f"{s.name}, " for s in plan.scalar_args),
                  casts=scalar_casts(plan), pointers="\n".join("    " + line for line in head),
                  full=path(False), tail=path(True))


def stages_source(plan: KernelPlan, dtypes: dict[str, str], rounding: dict[str, Rounding],
                  interpreted: bool = False) -> str:
    """A module defining ``kernel`` (the elementwise stage) and ``REDUCE_STAGES``."""
    name = kernel_name(plan, dtypes, frozenset(launcher_seeded(plan, rounding)), interpreted)
    reduces = [_reduce(plan, dtypes, name, k, interpreted)
               for k in range(len(plan.reduce_stages))]
    stages = "".join(f"{name}_r{k}, " for k in range(len(plan.reduce_stages)))
    return render_module("triton_stages.py", plan, dtypes, rounding, interpreted,
                         reduce_kernels="\n\n".join(reduces), stages=stages,
                         **_elementwise(plan, dtypes, rounding, interpreted))
