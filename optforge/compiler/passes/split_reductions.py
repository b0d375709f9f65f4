"""Cut a rule into a reduce stage and an elementwise stage.

Every reduction node (``ReduceSum``, ``ReduceMax``, ``Numel``) is replaced by a
``ReduceResult`` symbol ``r0, r1...``; identical reductions share one result. The
reduce stage computes them all in one pass over memory, without writing anything,
so a step that is abandoned after it (a non-finite gradient) leaves every tensor as
it was. The elementwise stage then recomputes what it needs: that costs reading the
inputs twice, which the traffic model counts, and no state is ever half-updated.
"""
from __future__ import annotations

import sympy as sp

from ...dsl.reductions import Numel, ReduceMax, ReduceSum, Reduction
from ..plan import ReduceOp, ReduceResult

_OPS = {ReduceSum: "sum", ReduceMax: "max", Numel: "numel"}


def split_reductions(outputs: dict[str, sp.Expr]) -> tuple[list[ReduceOp], dict[str, sp.Expr]]:
    """Return (reductions in first-use order, outputs over their ``ReduceResult`` symbols)."""
    found: dict[Reduction, ReduceResult] = {}
    for e in outputs.values():
        for node in sp.preorder_traversal(e):
            if isinstance(node, Reduction) and node not in found:
                found[node] = ReduceResult(f"r{len(found)}", real=True)
    ops = [ReduceOp(result, _OPS[type(node)], node.scope,
                    sp.Integer(1) if isinstance(node, Numel) else node.args[0])
           for node, result in found.items()]
    return ops, {k: e.xreplace(found) for k, e in outputs.items()}
