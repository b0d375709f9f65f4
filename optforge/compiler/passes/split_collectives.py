"""Cut collectives (``allreduce``, ``majority_vote``) out of a rule.

Every collective node is replaced by a ``CommResult`` named after it (``vote``...),
which the elementwise stage reads from a buffer; its argument becomes a buffer
``send_<name>`` that the elementwise pre-stage computes (one fused kernel on the
bucket's backend, the one matrix rules use for their matrix-stage arguments). Between
the two the runtime communicates (runtime/collective_stage.py), once per step for every
parameter of the optimizer together. A 32-bit collective's buffers are float32; a 1-bit
one's send buffer holds packed sign bits, which the pre-stage kernel writes itself, and
its result buffer every worker's bits, which the elementwise kernel counts itself
(``sign_bits`` / ``sign_votes``, compiler/packed_signs.py) -- float32 where the main
stage is several kernels (reduce stages), whose results the runtime counts.

A collective can fail at run time on every rank together (a NaN on some rank, ranks that
step different parameters), so a rule with one keeps every state update in the final
elementwise kernel: a refused step leaves every state as it was.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ...dsl.collectives import Collective
from ...dsl.symbols import StateDecl
from ..collective_ops import CollectiveOp, CommResult
from ..errors import CompileError
from ..packed_signs import SIGN_BITS, SIGN_VOTES
from .split_prestage import PrestageSplit


@dataclass
class CollectiveSplit:
    ops: list[CollectiveOp]  # in a canonical order (the runtime's wire order)
    sends: dict[str, sp.Expr]  # send buffer -> the value each worker contributes
    outputs: dict[str, sp.Expr]  # the rule's outputs over the ``CommResult`` symbols


def _nodes(outputs: dict[str, sp.Expr]) -> list[Collective]:
    found = {node for e in outputs.values() for node in sp.preorder_traversal(e)
             if isinstance(node, Collective)}
    return sorted(found, key=sp.default_sort_key)  # not the hash seed's traversal order


def split_collectives(rule_name: str, outputs: dict[str, sp.Expr],
                      states: dict[str, StateDecl]) -> CollectiveSplit:
    nodes = _nodes(outputs)
    if not nodes:
        return CollectiveSplit([], {}, outputs)
    by_name: dict[str, Collective] = {}
    for node in nodes:
        name = node.result_name
        if name in by_name:
            raise CompileError(
                f"rule {rule_name!r}: two different collectives are named {name!r} "
                f"({sp.sstr(by_name[name])} and {sp.sstr(node)}); give one another name=")
        for taken in (name, f"send_{name}"):
            if taken in states:
                raise CompileError(f"rule {rule_name!r}: the collective {sp.sstr(node)} "
                                   f"needs the name {taken!r}, which a state or input has; "
                                   "give it another name=")
        by_name[name] = node
    ops = [CollectiveOp(n.result_name, f"send_{n.result_name}", n.op, n.bits) for n in nodes]
    results = {n: CommResult(n.result_name, real=True) for n in nodes}
    sends = {op.send: n.value for op, n in zip(ops, nodes)}
    return CollectiveSplit(ops, sends, {k: e.xreplace(results) for k, e in outputs.items()})


def _dtypes(op: CollectiveOp, packed_results: bool) -> dict[str, str]:
    """Storage dtypes of a collective's send and result buffers."""
    if op.bits == 32:
        return {op.send: "float32", op.result: "float32"}
    return {op.send: SIGN_BITS, op.result: SIGN_VOTES if packed_results else "float32"}


def with_collectives(pre: PrestageSplit, split: CollectiveSplit,
                     states: dict[str, StateDecl], packed_results: bool) -> PrestageSplit:
    """The pre-stage also computes every send buffer; state updates it took over go back
    to the elementwise stage (a collective may refuse the step after the pre-stage).
    ``packed_results``: the elementwise stage reads 1-bit results as packed bits."""
    if not split.ops:
        return pre
    kept = {n: e for n, e in pre.pre.items() if n not in states}
    returned = {n: e for n, e in pre.pre.items() if n in states}
    dtypes = dict(pre.buffer_dtypes)
    for op in split.ops:
        dtypes.update(_dtypes(op, packed_results))
    return PrestageSplit({**kept, **split.sends}, pre.matrix,
                         {**pre.elementwise, **returned}, dtypes)
