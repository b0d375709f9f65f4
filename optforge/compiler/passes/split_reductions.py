"""Cut a rule into reduce stages and an elementwise stage.

Every reduction node (``ReduceSum``, ``ReduceMax``, ``Numel``) is replaced by a
``ReduceResult`` symbol ``r0, r1...``; identical reductions share one result.
Reductions whose argument holds no other reduction form stage 0; those that need
stage 0's results form stage 1, and so on. A reduce stage computes its reductions
in one pass over memory, without writing anything,
so a step that is abandoned after it (a non-finite gradient) leaves every tensor as
it was. The elementwise stage then recomputes what it needs: that costs reading the
inputs twice, which the traffic model counts, and no state is ever half-updated.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ...dsl.reductions import NDim, Numel, ReduceMax, ReduceSum, Reduction
from ..plan import ReduceKind, ReduceOp, ReduceResult, Scope

_OPS = {ReduceSum: ReduceKind.SUM, ReduceMax: ReduceKind.MAX, Numel: ReduceKind.NUMEL,
        NDim: ReduceKind.NDIM}
_SHAPE_ONLY = (Numel, NDim)  # known from the tensor's shape: no argument to reduce
# an optimizer-wide reduction is a group one to the kernels (one partial per tensor);
# only its total differs, which the runtime makes (ReduceOp.span)
_KERNEL_SCOPE = {"optimizer": "group"}


def _innermost(outputs) -> list[Reduction]:
    """The reductions holding no other, in a canonical order: the order of a traversal
    follows SymPy's argument order, which for some expressions depends on the process's
    hash seed (AdamP's row and tensor sums swapped numbers from one run to the next,
    changing the plan's fingerprint and missing the on-disk kernel cache)."""
    found = []
    for e in outputs.values():
        for node in sp.preorder_traversal(e):
            if isinstance(node, Reduction) and node not in found and not any(
                    isinstance(inner, Reduction) for inner in sp.preorder_traversal(node)
                    if inner is not node):
                found.append(node)
    return sorted(found, key=sp.default_sort_key)


@dataclass
class ReduceSplit:
    stages: list[list[ReduceOp]]  # the reductions of each reduce stage, in stage order
    outputs: dict[str, sp.Expr]  # the rule's outputs over their ``ReduceResult`` symbols


def split_reductions(outputs: dict[str, sp.Expr]) -> ReduceSplit:
    stages, count = [], 0
    while True:
        nodes = _innermost(outputs)
        if not nodes:
            return ReduceSplit(stages, outputs)
        results = {}
        for node in nodes:
            results[node] = ReduceResult(f"r{count}", real=True)
            count += 1
        stages.append([ReduceOp(results[n], _OPS[type(n)],
                                Scope(_KERNEL_SCOPE.get(n.scope, n.scope)),
                                sp.Integer(1) if isinstance(n, _SHAPE_ONLY) else n.args[0],
                                span="optimizer" if n.scope == "optimizer" else "group")
                       for n in nodes])
        outputs = {k: e.xreplace(results) for k, e in outputs.items()}
