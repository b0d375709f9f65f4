"""Cut matrix operations out of a rule: each becomes a matrix stage and a tensor symbol.

``orthogonalize(u)`` is replaced everywhere by a ``MatrixResult`` ``mat0`` that the
elementwise stage loads from a buffer; the stage records what to materialise (``u``,
computed elementwise from the loaded tensors) and the op's scalar parameters. Identical
operations share one stage.
"""
from __future__ import annotations

import sympy as sp

from ...dsl.matrix import Orthogonalize
from ..plan import MatrixResult


def split_matrix(outputs: dict[str, sp.Expr]):
    """Return ([(result, op node)], outputs over the results)."""
    found: dict[Orthogonalize, MatrixResult] = {}
    for e in outputs.values():
        for node in sp.preorder_traversal(e):
            if isinstance(node, Orthogonalize) and node not in found:
                found[node] = MatrixResult(f"mat{len(found)}", real=True)
    return ([(result, node) for node, result in found.items()],
            {k: e.xreplace(found) for k, e in outputs.items()})
