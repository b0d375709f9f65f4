"""Which reduction results and per-scope values a kernel uses, and how finely each varies.

Every reduction result ``r`` and per-scope value ``m`` has a ``ResultKind``, the finest
index it varies with: SCALAR (one value per tensor: tensor and group scopes,
numel/ndim), ROW (one per row of the tensor's ``(shape[0], -1)`` view) or COL (one per
column; a value using both row and column results varies per element and is computed
per element, like a column value). A kernel computes each value where its kind makes
it constant; this analysis, shared by every backend's printer and by the launchers,
says which values a stage needs, in dependency order, and of which kind.
"""
from __future__ import annotations

import sympy as sp

from .abi import partial_groups
from .plan import KernelPlan, ReduceOp, ReduceResult, ResultKind, ScopeTemp


class ScopeUse:
    """The results and per-scope values that ``exprs`` use, in dependency order."""

    def __init__(self, plan: KernelPlan, exprs):
        self.ops: dict[sp.Symbol, tuple[int, ReduceOp]] = {
            r.result: (i, r) for i, r in enumerate(plan.reductions)}
        self.temps = dict(plan.scope_temps)
        self.kind: dict[sp.Symbol, ResultKind] = {}
        self.order: list[sp.Symbol] = []
        for e in exprs:
            self._visit(e)

    def _visit(self, e) -> ResultKind:
        kind = ResultKind.SCALAR
        for s in sorted(e.free_symbols, key=str):
            if s not in self.kind:
                if isinstance(s, ReduceResult):
                    self.kind[s] = self.ops[s][1].result_kind
                elif isinstance(s, ScopeTemp):
                    self.kind[s] = self._visit(self.temps[s])
                else:
                    continue
                self.order.append(s)
            kind = max(kind, self.kind[s], key=lambda k: k.rank)
        return kind

    @property
    def uses_vectors(self) -> bool:
        """Whether a row or column value is used (the kernel then walks rows)."""
        return any(k != ResultKind.SCALAR for k in self.kind.values())

    def result(self, s: sp.Symbol) -> ReduceOp | None:
        """The reduction ``s`` is the result of (None for a per-scope value)."""
        found = self.ops.get(s)
        return None if found is None else found[1]

    def position(self, s: sp.Symbol) -> int:
        """Where result ``s`` stands in ``plan.reductions``."""
        return self.ops[s][0]

    def value(self, s: sp.Symbol) -> sp.Expr:
        """A per-scope value's expression."""
        return self.temps[s]


def stage_exprs(plan: KernelPlan, index: int) -> list[sp.Expr]:
    """What reduce stage ``index`` evaluates per element: its temporaries and arguments."""
    stage = plan.reduce_stages[index]
    return [e for _, e in stage.temps] + [r.expr for r in stage.reductions
                                          if not r.op.from_shape]


def elementwise_exprs(plan: KernelPlan) -> list[sp.Expr]:
    return [e for _, e in plan.temps] + [e for _, e in plan.stores]


def stage_uses_rows_or_cols(plan: KernelPlan, index: int) -> bool:
    """Whether reduce stage ``index`` needs the (rows, row length) view (else: flat)."""
    return partial_groups(plan.reduce_stages[index]).by_rows or \
        ScopeUse(plan, stage_exprs(plan, index)).uses_vectors
