"""Where the numba kernels of a multi-stage plan get reduction results and per-scope values.

Which values a kernel needs, and whether each is one per tensor, row or column, is the
printer-independent ``compiler/scope_use.py``; this file spells where numba reads them.
The kernels read the *finished results* only (the launcher passes scalar results in a
per-tensor table ``rs[j, c]`` and row/column vectors as addresses ``raddr[c, j]``,
``abi.result_layout``), and compute the per-scope math themselves where its kind makes
it constant: scalar values once per block, row values once per row segment, column
values per element. numel/ndim over a tensor, row or column are read from the shape
table instead (``shapes[j] = numel, rows, row length, ndim``); over a group they are
results.
"""
from __future__ import annotations

from functools import cached_property

from ..abi import result_layout
from ..plan import KernelPlan, ReduceKind, ReduceResult, ResultKind, Scope, ScopeTemp
from ..scope_use import ScopeUse

# the shape-table column of numel over a tensor, a row (its length) or a column (rows)
_SHAPE_COLUMN = {(ReduceKind.NUMEL, Scope.TENSOR): 0, (ReduceKind.NUMEL, Scope.ROW): 2,
                 (ReduceKind.NUMEL, Scope.COL): 1}
_NDIM_COLUMN = 3


class Scopes(ScopeUse):
    """The per-scope lines a kernel needs to evaluate ``exprs`` (a stage's expressions)."""

    def __init__(self, plan: KernelPlan, printer, ftype: str, exprs):
        super().__init__(plan, exprs)
        self.pr, self.f = printer, ftype
        rs, rv = result_layout(plan, shapes_known=True)
        self.rs_col = {i: c for c, i in enumerate(rs)}
        self.rv_row = {i: c for c, i in enumerate(rv)}

    @property
    def per_row(self) -> bool:
        """Whether the kernel must walk row segments (a row or column value is used)."""
        return self.uses_vectors

    def block_lines(self, indent: str) -> list[str]:
        """Scalar values, and the views of row/column result vectors, for tensor ``j``."""
        out = []
        for s in self.order:
            kind, r = self.kind[s], self.result(s)
            if r is None:
                if kind == ResultKind.SCALAR:
                    out.append(f"{s.name} = {self.pr.doprint(self.value(s))}")
            elif r.from_shape:
                col = _NDIM_COLUMN if r.op == ReduceKind.NDIM else _SHAPE_COLUMN[(r.op, r.scope)]
                out.append(f"{s.name} = {self.f}(shapes[j, {col}])")
            elif kind == ResultKind.SCALAR:
                out.append(f"{s.name} = rs[j, {self.rs_col[self.position(s)]}]")
            else:
                length = "shapes[j, 1]" if kind == ResultKind.ROW else "shapes[j, 2]"
                out.append(f"rv_{s.name} = carray(ptr_{self.ptr}("
                           f"raddr[{self.rv_row[self.position(s)]}, j]), {length})")
        return [indent + line for line in out]

    @property
    def ptr(self) -> str:
        return "f64" if self.f == "np.float64" else "f32"

    def segment_lines(self, indent: str) -> list[str]:
        """Row values for row ``r``; views of column vectors from column ``c0`` (``m`` long)."""
        out = []
        for s in self.order:
            kind = self.kind[s]
            if isinstance(s, ReduceResult) and not self.result(s).from_shape:
                if kind == ResultKind.ROW:
                    out.append(f"{s.name} = rv_{s.name}[r]")
                elif kind == ResultKind.COL:
                    out.append(f"cv_{s.name} = rv_{s.name}[c0:c0 + m]")
            elif isinstance(s, ScopeTemp) and kind == ResultKind.ROW:
                out.append(f"{s.name} = {self.pr.doprint(self.value(s))}")
        return [indent + line for line in out]

    def flat_lines(self, indent: str) -> list[str]:
        """Row and column results for element i of a block of rows of one element (row
        ``lo + i``, column 0); the values computed from them are ``flat_values``."""
        out = ["r = lo + i"]
        for s in self.order:
            kind = self.kind[s]
            if kind != ResultKind.SCALAR and isinstance(s, ReduceResult) \
                    and not self.result(s).from_shape:
                out.append(f"{s.name} = rv_{s.name}[{'r' if kind == ResultKind.ROW else 0}]")
        return [indent + line for line in out]

    @cached_property
    def flat_values(self) -> dict:
        """{row or column value: its expression in results and scalar values}: in a block
        of rows of one each is one element's, so it is printed where it is used, and a
        branch of a ``where`` computes only its own."""
        found: dict = {}
        for s in self.order:
            if isinstance(s, ScopeTemp) and self.kind[s] != ResultKind.SCALAR:
                found[s] = self.value(s).xreplace(found)
        return found

    def element_lines(self, indent: str) -> list[str]:
        """Column (and row x column) values for element ``i`` of the segment."""
        out = []
        for s in self.order:
            if self.kind[s] != ResultKind.COL:
                continue
            if isinstance(s, ReduceResult):
                out.append(f"{s.name} = cv_{s.name}[i]")
            else:
                out.append(f"{s.name} = {self.pr.doprint(self.value(s))}")
        return [indent + line for line in out]
