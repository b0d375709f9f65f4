"""Where the numba kernels of a multi-stage plan get reduction results and per-scope values.

Every reduction result ``r`` and per-scope value ``m`` has a *kind*, the finest index
it varies with:

* ``scalar``: one value per tensor (tensor and group scopes, numel/ndim);
* ``row``: one per row of the tensor's ``(shape[0], -1)`` view;
* ``col``: one per column of that view (a value using both row and column results
  varies per element and is computed per element, like a col value).

The kernels read the *finished results* only (the launcher passes scalar results in a
per-tensor table ``rs[j, c]`` and row/column vectors as addresses ``raddr[c, j]``),
and compute the per-scope math themselves where its kind makes it constant: scalar
values once per block, row values once per row segment, column values per element.
numel/ndim over a tensor, row or column are read from the shape table instead
(``shapes[j] = numel, rows, row length, ndim``); over a group they are results.
"""
from __future__ import annotations

import sympy as sp

from ..plan import KernelPlan, ReduceOp, ReduceResult, ScopeTemp

_RANK = {"scalar": 0, "row": 1, "col": 2}
_SHAPE_COLUMN = {("numel", "tensor"): 0, ("numel", "row"): 2, ("numel", "col"): 1}


def result_kind(r: ReduceOp) -> str:
    if r.op in ("numel", "ndim") or r.scope in ("tensor", "group"):
        return "scalar"
    return r.scope


def from_shape(r: ReduceOp) -> bool:
    """numel/ndim over one tensor, its rows or columns: known from the shape table."""
    return r.op in ("numel", "ndim") and r.scope != "group"


def result_layout(plan: KernelPlan) -> tuple[list[int], list[int]]:
    """Positions in ``plan.reductions`` of the results passed as the scalar table ``rs``
    (columns in order) and as vectors ``raddr`` (rows in order)."""
    scalars, vectors = [], []
    for i, r in enumerate(plan.reductions):
        if from_shape(r):
            continue
        (scalars if result_kind(r) == "scalar" else vectors).append(i)
    return scalars, vectors


class Scopes:
    """The per-scope lines a kernel needs to evaluate ``exprs`` (a stage's expressions)."""

    def __init__(self, plan: KernelPlan, printer, ftype: str, exprs):
        self.plan, self.pr, self.f = plan, printer, ftype
        self.ops = {r.result: (i, r) for i, r in enumerate(plan.reductions)}
        self.temps = dict(plan.scope_temps)
        self.kind: dict[sp.Symbol, str] = {}
        self.order: list[sp.Symbol] = []
        for e in exprs:
            self._visit(e)
        rs, rv = result_layout(plan)
        self.rs_col = {i: c for c, i in enumerate(rs)}
        self.rv_row = {i: c for c, i in enumerate(rv)}

    def _visit(self, e) -> str:
        kind = "scalar"
        for s in sorted(e.free_symbols, key=str):
            if s in self.kind:
                k = self.kind[s]
            elif isinstance(s, ReduceResult):
                k = self.kind[s] = result_kind(self.ops[s][1])
                self.order.append(s)
            elif isinstance(s, ScopeTemp):
                k = self._visit(self.temps[s])
                self.kind[s] = k
                self.order.append(s)
            else:
                continue
            kind = max(kind, k, key=_RANK.get)
        return kind

    @property
    def per_row(self) -> bool:
        """Whether the kernel must walk row segments (a row or column value is used)."""
        return any(k != "scalar" for k in self.kind.values())

    def block_lines(self, indent: str) -> list[str]:
        """Scalar values, and the views of row/column result vectors, for tensor ``j``."""
        out = []
        for s in self.order:
            kind = self.kind[s]
            if isinstance(s, ReduceResult):
                i, r = self.ops[s]
                if from_shape(r):
                    col = 3 if r.op == "ndim" else _SHAPE_COLUMN[(r.op, r.scope)]
                    out.append(f"{s.name} = {self.f}(shapes[j, {col}])")
                elif kind == "scalar":
                    out.append(f"{s.name} = rs[j, {self.rs_col[i]}]")
                else:
                    length = "shapes[j, 1]" if kind == "row" else "shapes[j, 2]"
                    out.append(f"rv_{s.name} = carray(ptr_{self.ptr}(raddr[{self.rv_row[i]}, j]), "
                               f"{length})")
            elif kind == "scalar":
                out.append(f"{s.name} = {self.pr.doprint(self.temps[s])}")
        return [indent + line for line in out]

    @property
    def ptr(self) -> str:
        return "f64" if self.f == "np.float64" else "f32"

    def segment_lines(self, indent: str) -> list[str]:
        """Row values for row ``r``; views of column vectors from column ``c0`` (``m`` long)."""
        out = []
        for s in self.order:
            kind = self.kind[s]
            if isinstance(s, ReduceResult) and not from_shape(self.ops[s][1]):
                if kind == "row":
                    out.append(f"{s.name} = rv_{s.name}[r]")
                elif kind == "col":
                    out.append(f"cv_{s.name} = rv_{s.name}[c0:c0 + m]")
            elif isinstance(s, ScopeTemp) and kind == "row":
                out.append(f"{s.name} = {self.pr.doprint(self.temps[s])}")
        return [indent + line for line in out]

    def element_lines(self, indent: str) -> list[str]:
        """Column (and row x column) values for element ``i`` of the segment."""
        out = []
        for s in self.order:
            if self.kind[s] != "col":
                continue
            if isinstance(s, ReduceResult):
                out.append(f"{s.name} = cv_{s.name}[i]")
            else:
                out.append(f"{s.name} = {self.pr.doprint(self.temps[s])}")
        return [indent + line for line in out]
