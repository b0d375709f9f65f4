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

import sympy as sp

from ..plan import KernelPlan, ReduceOp, ReduceResult, ScopeTemp
from ..templates import render
from .rounding_spellings import rounded_stochastically
from .triton import (TritonPrinter, _load, _store, helpers, kernel_name, pointer_type,
                     rng_lines, tensor_refs)


def result_kind(r: ReduceOp) -> str:
    """"scalar" (one value per tensor), "row" or "col" (a vector per tensor)."""
    if r.op in ("numel", "ndim") or r.scope in ("tensor", "group"):
        return "scalar"
    return r.scope


def result_layout(plan: KernelPlan) -> tuple[list[int], list[int]]:
    """Positions in ``plan.reductions`` of the scalar-table columns and vector-table rows."""
    scalars = [i for i, r in enumerate(plan.reductions) if result_kind(r) == "scalar"]
    vectors = [i for i, r in enumerate(plan.reductions) if result_kind(r) != "scalar"]
    return scalars, vectors


class StagePrinter(TritonPrinter):
    """The triton printer, also printing reduction results and per-scope values as names."""

    def doprint(self, e) -> str:
        if isinstance(e, (ReduceResult, ScopeTemp)):
            return e.name
        return super().doprint(e)


class Scopes:
    """The results and per-scope values a kernel needs to evaluate ``exprs``, in order."""

    def __init__(self, plan: KernelPlan, pr: StagePrinter, exprs):
        self.pr = pr
        self.ops = {r.result: (i, r) for i, r in enumerate(plan.reductions)}
        self.temps = dict(plan.scope_temps)
        self.vector: dict[sp.Symbol, bool] = {}
        self.order: list[sp.Symbol] = []
        for e in exprs:
            self._visit(e)
        scalars, vectors = result_layout(plan)
        self.n_scalars = len(scalars)
        self.column = {i: c for c, i in enumerate(scalars)} | {i: c for c, i in enumerate(vectors)}

    def _visit(self, e) -> bool:
        vector = False
        for s in sorted(e.free_symbols, key=str):
            if s not in self.vector:
                if isinstance(s, ReduceResult):
                    self.vector[s] = result_kind(self.ops[s][1]) != "scalar"
                elif isinstance(s, ScopeTemp):
                    self.vector[s] = self._visit(self.temps[s])
                else:
                    continue
                self.order.append(s)
            vector = vector or self.vector[s]
        return vector

    @property
    def uses_vectors(self) -> bool:
        return any(self.vector.values())

    def uses_kind(self, kind: str) -> bool:
        return any(result_kind(self.ops[s][1]) == kind for s in self.order if s in self.ops)

    def program_lines(self) -> list[str]:
        """Scalar results and values, and the pointers of vector results, for tensor tid."""
        out = []
        for s in self.order:
            if s in self.ops:
                c = self.column[self.ops[s][0]]
                if self.vector[s]:
                    out.append(f"ptr_{s.name} = tl.load(raddr_tab + {c} * n_tensors + tid)"
                               ".to(tl.pointer_type(tl.float32))")
                else:
                    out.append(f"{s.name} = tl.load(rs_tab + tid * {self.n_scalars} + {c})")
            elif not self.vector[s]:
                out.append(f"{s.name} = {self.pr.doprint(self.temps[s])}")
        return out

    def element_lines(self, row: str, col: str, row_mask: str, col_mask: str,
                      one_row: str | None = None) -> list[str]:
        """Row/column results gathered at indices ``row``/``col``; the values using them.
        ``one_row``: the scalar row index of a block inside one row, whose row results
        are loaded once and broadcast (a block of one value: the values computed from
        them are the same SSA value per thread, computed once; types match the other
        paths, as triton's if requires)."""
        out = []
        for s in self.order:
            if not self.vector[s]:
                continue
            if s in self.ops:
                kind = result_kind(self.ops[s][1])
                index, mask = (row, row_mask) if kind == "row" else (col, col_mask)
                masked = f", mask={mask}, other=0.0" if mask else ""
                if kind == "row" and one_row is not None:
                    out.append(f"{s.name} = tl.load(ptr_{s.name} + {one_row})"
                               " + tl.zeros([BLOCK_SIZE], tl.float32)")
                else:
                    out.append(f"{s.name} = tl.load(ptr_{s.name} + {index}{masked})")
            else:
                out.append(f"{s.name} = {self.pr.doprint(self.temps[s])}")
        return out


def stage_uses_rows_or_cols(plan: KernelPlan, index: int) -> bool:
    """Whether reduce stage ``index`` needs the (rows, row length) view (else: flat)."""
    stage = plan.reduce_stages[index]
    if any(r.scope in ("row", "col") and r.op not in ("numel", "ndim")
           for r in stage.reductions):
        return True
    exprs = [e for _, e in stage.temps] + [r.expr for r in stage.reductions]
    return Scopes(plan, StagePrinter(plan.rule_name), exprs).uses_vectors


def _pointers(refs, dtypes, names, interpreted) -> list[str]:
    return [f"ptr_{r.name} = tl.multiple_of(tl.load(addr_tab + {i} * n_tensors + tid)"
            f".to(tl.pointer_type({pointer_type(dtypes[r.name], interpreted)})), ALIGN)"
            for i, r in enumerate(refs) if r.name in names]


def _elementwise(plan, dtypes, stochastic, interpreted) -> dict:
    pr = StagePrinter(plan.rule_name)
    pr.param_dtype = dtypes.get("p")  # (set wherever p is stored)
    exprs = [e for _, e in plan.temps] + [e for _, e in plan.stores]
    scopes = Scopes(plan, pr, exprs)
    refs = tensor_refs(plan)
    rows = [f"    ptr_{r.name} = tl.multiple_of(tl.load(addr_tab + {i} * n_tensors + tid)"
            f".to(tl.pointer_type({pointer_type(dtypes[r.name], interpreted)})), ALIGN)"
            for i, r in enumerate(refs)]
    head = ["n_cols = tl.load(shape_tab + 2 * tid + 1)"] if scopes.uses_vectors else []
    head += scopes.program_lines()
    temps = [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    outputs = []
    for ref, e in plan.stores:
        value = pr.doprint(e)
        if not pr.tensor(e):  # no loaded tensor in it: make it a block (a no-op otherwise)
            value = f"{value} + tl.zeros([BLOCK_SIZE], tl.float32)"
        outputs.append(f"o_{ref.name} = {value}")

    def body(masked: bool, index: list[str], indent: str = "        ",
             one_row: str | None = None) -> str:
        m = "mask" if masked else ""
        lines = ([_load(r, dtypes[r.name], masked) for r in plan.loads] + index
                 + scopes.element_lines("row", "col", m, m, one_row) + temps + outputs
                 + [_store(r, dtypes[r.name], r.name in stochastic, masked)
                    for r, _ in plan.stores])
        return "\n".join(indent + line for line in lines)

    if not scopes.uses_vectors:
        return dict(pointers="\n".join(rows + ["    " + x for x in head]),
                    full=body(False, []), tail=body(True, []))
    per_element = ["row = offs // n_cols", "col = offs - row * n_cols"]
    return dict(pointers="\n".join(rows + ["    " + x for x in head]),
                full=_row_paths(lambda index, one_row=None: body(False, index, " " * 12,
                                                                  one_row), per_element),
                tail=body(True, per_element))


def _row_paths(body, per_element: list[str]) -> str:
    """The full-block path of a kernel gathering row/column results, in three cases:
    the block inside one row (row results the same for every element: loaded and used
    once per thread, no division), a tensor under 2**31 elements (a 32-bit division per
    element; a 64-bit one is a ~70-instruction subroutine), and the rest."""
    lines = ["        row0 = start // n_cols",
             "        col0 = start - row0 * n_cols",
             "        if col0 + BLOCK_SIZE <= n_cols:",
             body(["row = row0 + tl.zeros([BLOCK_SIZE], tl.int64)",
                   "col = col0 + tl.arange(0, BLOCK_SIZE).to(tl.int64)"], "row0"),
             "        elif numel < 2147483648:",
             body(["o32 = offs.to(tl.int32)", "n32 = n_cols.to(tl.int32)",
                   "q32 = o32 // n32", "row = q32.to(tl.int64)",
                   "col = (o32 - q32 * n32).to(tl.int64)"]),
             "        else:",
             body(per_element)]
    return "\n".join(lines)


_IDENTITY = {"sum": "0.0", "nonfinite": "0.0", "max": "float('-inf')"}


def _reduce_all(op: str, x: str, axis: int | None) -> str:
    if op == "max":
        return f"amax_axis({x}, {axis})" if axis is not None else f"amax_all({x})"
    return f"tl.sum({x}, {axis})" if axis is not None else f"tl.sum(tl.sum({x}, 1), 0)"


def _reduce_body(plan, stage, pr, scopes, dtypes, masked: bool) -> list[str]:
    """One path of a reduce kernel: loads, values, and each reduction's partials."""
    ops = [r for r in stage.reductions if r.op not in ("numel", "ndim")]
    m = "mask" if masked else ""
    lines = [_load(r, dtypes[r.name], masked) for r in stage.loads]
    lines += scopes.element_lines("rr", "cc", m and "rmask", m and "cmask")
    lines += [f"{s.name} = {pr.doprint(e)}" for s, e in stage.temps]
    counters = {"t": 0, "row": 0, "col": 0}
    for k, r in enumerate(ops):
        x = pr.doprint(r.expr)
        if r.op == "nonfinite":  # NaN and +-inf: x - x is not 0
            x = f"tl.where(({x}) - ({x}) == 0.0, 0.0, 1.0)"
        lines.append(f"x{k} = tl.where(mask, {x} + zero, {_IDENTITY[r.op]})" if masked
                     else f"x{k} = {x} + zero")
        kind = "t" if r.scope in ("tensor", "group") else r.scope
        q = counters[kind]
        counters[kind] += 1
        if kind == "t":
            lines.append(f"tl.store(out_t + {q} * n_programs + pid, "
                         f"{_reduce_all(r.op, f'x{k}', None)})")
        elif kind == "row":
            lines.append(f"tl.store(out_row + {q} * row_total + rpos + ri * rstride, "
                         f"{_reduce_all(r.op, f'x{k}', 1)}, mask=row0 + ri < n_rows)")
        else:
            lines.append(f"tl.store(out_col + {q} * col_total + cpos + ci * cstride, "
                         f"{_reduce_all(r.op, f'x{k}', 0)}, mask=col0 + ci < n_cols)")
    return lines


def _reduce(plan, dtypes, name, index, interpreted) -> str:
    stage = plan.reduce_stages[index]
    pr = StagePrinter(plan.rule_name)
    ops = [r for r in stage.reductions if r.op not in ("numel", "ndim")]
    scopes = Scopes(plan, pr, [e for _, e in stage.temps] + [r.expr for r in ops])
    head = _pointers(tensor_refs(plan), dtypes, {r.name for r in stage.loads}, interpreted)
    head += scopes.program_lines()
    scalars = [s.name for s in plan.scalar_args]

    def path(masked):  # (a stage of only numel/ndim reduces nothing here)
        lines = _reduce_body(plan, stage, pr, scopes, dtypes, masked) or ["pass"]
        return "\n".join("        " + line for line in lines)
    return render("triton_reduce_kernel.py", kernel=f"{name}_r{index}", index=str(index),
                  args="".join(f"{a}, " for a in scalars),
                  casts="\n".join(f"    {s} = tl.cast({s}, tl.float32)" for s in scalars)
                  or "    pass",
                  pointers="\n".join("    " + line for line in head),
                  full=path(False), tail=path(True))


def stages_source(plan: KernelPlan, dtypes: dict[str, str], stochastic: frozenset,
                  interpreted: bool = False) -> str:
    """A module defining ``kernel`` (the elementwise stage) and ``REDUCE_STAGES``."""
    name = kernel_name(plan, dtypes, stochastic, interpreted)
    scalars = [s.name for s in plan.scalar_args]
    seeds = [f"seed_{n}" for n in sorted(stochastic)]
    marked = rounded_stochastically(plan, dtypes)
    rng = rng_lines(stochastic, plan, marked)
    reduces = [_reduce(plan, dtypes, name, k, interpreted)
               for k in range(len(plan.reduce_stages))]
    stages = "".join(f"{name}_r{k}, " for k in range(len(plan.reduce_stages)))
    return render("triton_stages.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  dtypes=", ".join(f"{k}:{v}" for k, v in dtypes.items()),
                  stochastic=", ".join(sorted(stochastic)) or "none",
                  helpers=helpers(interpreted), kernel=name,
                  args="".join(f"{a}, " for a in scalars + seeds),
                  casts="\n".join(f"    {s} = tl.cast({s}, tl.float32)" for s in scalars)
                  or "    pass", rng=rng, reduce_kernels="\n\n".join(reduces),
                  stages=stages, **_elementwise(plan, dtypes, stochastic | marked, interpreted))
