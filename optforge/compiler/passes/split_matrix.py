"""Cut matrix operations out of a rule into the matrix stage.

Every outermost matrix operation of a parameter or per-element state update
(``orthogonalize(u)``, ``matmul(matmul(PL, g), PR)``) is replaced by a ``MatrixResult``
``mat0, mat1...`` that the elementwise stage loads from a float32 buffer shaped like the
parameter; identical operations share one buffer. Matrix states' new values leave the
elementwise outputs altogether: the matrix stage computes them too.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ...dsl.matrix import MatrixOp
from ..plan import MatrixResult


def _outermost(e: sp.Basic, found: list) -> None:
    if isinstance(e, MatrixOp):
        if e not in found:
            found.append(e)
        return
    for a in e.args:
        _outermost(a, found)


@dataclass
class MatrixSplit:
    stage: dict[str, sp.Expr]  # the matrix stage's outputs: ``mat<i>`` and matrix states
    elementwise: dict[str, sp.Expr]  # the rest, over the ``mat<i>`` results


def split_matrix(outputs: dict[str, sp.Expr], matrix_states: set[str]) -> MatrixSplit:
    elementwise = {k: e for k, e in outputs.items() if k not in matrix_states}
    nodes: list = []
    for e in elementwise.values():
        _outermost(e, nodes)
    results = {node: MatrixResult(f"mat{i}", real=True) for i, node in enumerate(nodes)}
    stage = {str(r): node for node, r in results.items()}
    stage.update({k: e for k, e in outputs.items() if k in matrix_states})
    return MatrixSplit(stage, {k: e.xreplace(results) for k, e in elementwise.items()})
