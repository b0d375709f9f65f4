"""Give the matrix stage its elementwise inputs from one fused pass (the pre-stage).

Muon orthogonalizes ``g + momentum * (buf_new - g)`` with ``buf_new`` the updated
momentum. Evaluated inside the matrix stage, that argument is a chain of whole-tensor
torch ops (a pass over memory each), and the momentum update itself is done a second
time by the elementwise stage. This pass moves such work into an elementwise
*pre-stage* that runs, as one fused kernel on the bucket's backend, before the matrix
stage:

* every argument of a matrix operation that is a compound per-element expression
  (``pre0, pre1...``) becomes a float32 buffer the pre-stage writes and the matrix stage
  reads;
* a per-element state whose new value does not depend on the matrix stage, and that
  nothing after the pre-stage reads (neither its old value nor, through it, its new
  one), is updated by the pre-stage instead of the elementwise stage (Muon's momentum:
  one read, one write) -- but only when the matrix stage cannot fail at run time: no
  factorization (inverse, inv_root, solve, eigenvectors); the scalar arguments that
  could be out of range (orthogonalize's steps, every's k) are checked before the
  pre-stage runs (``check_<k>`` in the generated torch code). So a raising matrix stage
  never leaves a state half-stepped; running out of memory inside it still can.

Arguments are left in place when hoisting could change what is computed or when it
cannot pay: bare tensors (``matmul(L, g)``), expressions reading matrix states, layer
batches, reduction results or other matrix operations, and anything under ``every(k,
...)`` (a refresh that runs one step in k must stay lazy).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ...dsl.matrix import (Eigenvectors, Every, Inverse, InvRoot, MatrixOp, Orthogonalize,
                           Solve)
from ...dsl.symbols import (GradSymbol, InputSymbol, ParamSymbol, ScalarSymbol, StateDecl,
                            StateSymbol, TensorSymbol)
from ..plan import PreResult, StateKind


def _per_element(e: sp.Basic, states: dict[str, StateDecl]) -> bool:
    """Can one elementwise kernel compute ``e`` before the matrix stage?"""
    if isinstance(e, MatrixOp) or any(isinstance(a, MatrixOp) for a in sp.preorder_traversal(e)):
        return False
    for s in e.free_symbols:
        if isinstance(s, (ParamSymbol, GradSymbol, ScalarSymbol)):  # scalars: the prologue's
            continue
        if isinstance(s, (StateSymbol, InputSymbol)) and s.name in states \
                and states[s.name].kind in (StateKind.STATE, StateKind.INPUT) and not states[s.name].shape:
            continue
        return False  # matrix states, layer batches, reduction results, matrix results
    return True


class _Hoister:
    def __init__(self, states):
        self.states, self.buffers, self.dtypes = states, {}, {}

    def node(self, e: sp.Basic) -> sp.Basic:
        if isinstance(e, Every):  # lazy refresh: leave untouched
            return e
        if isinstance(e, MatrixOp):
            # orthogonalize's input is rounded to its iteration dtype first: the buffer may
            # be stored in that dtype (same values, half the bytes, no cast pass)
            half = e.dtype if isinstance(e, Orthogonalize) else "float32"
            return e.func(*[self.argument(a, half if i == 0 else "float32")
                            for i, a in enumerate(e.args)])
        if not e.args:
            return e
        return e.func(*[self.node(a) for a in e.args])

    def argument(self, a: sp.Basic, dtype: str) -> sp.Basic:
        compound = isinstance(a, sp.Expr) and not a.is_Atom and \
            any(isinstance(s, TensorSymbol) for s in a.free_symbols)
        if compound and _per_element(a, self.states):
            if a not in self.buffers:
                self.buffers[a] = PreResult(f"pre{len(self.buffers)}", real=True)
            name = str(self.buffers[a])  # shared by ops wanting different dtypes: float32
            self.dtypes[name] = dtype if self.dtypes.get(name, dtype) == dtype else "float32"
            return self.buffers[a]
        return self.node(a)


# linalg that may raise (not PD, singular)
FALLIBLE = (Inverse, InvRoot, Solve, Eigenvectors)


def _reads(e: sp.Basic, name: str) -> bool:
    return any(isinstance(s, StateSymbol) and s.name == name for s in e.free_symbols)


@dataclass
class PrestageSplit:
    # the ``pre<i>`` buffers and the per-element states the pre-stage now updates; empty
    # when nothing qualifies (the plan is then as before this pass)
    pre: dict[str, sp.Expr]
    matrix: dict[str, sp.Expr]  # the matrix stage's outputs, over the ``pre<i>`` buffers
    elementwise: dict[str, sp.Expr]  # what the elementwise stage still writes
    buffer_dtypes: dict[str, str]  # each ``pre<i>``'s storage dtype


def split_prestage(matrix_outputs: dict[str, sp.Expr], elementwise: dict[str, sp.Expr],
                   states: dict[str, StateDecl]) -> PrestageSplit:
    h = _Hoister(states)
    matrix_outputs = {k: h.node(e) for k, e in matrix_outputs.items()}
    if not h.buffers:
        return PrestageSplit({}, matrix_outputs, elementwise, {})
    pre = {str(sym): arg for arg, sym in h.buffers.items()}
    if any(isinstance(node, FALLIBLE) for e in matrix_outputs.values()
           for node in sp.preorder_traversal(e)):
        return PrestageSplit(pre, matrix_outputs, elementwise, h.dtypes)
    for name, new in list(elementwise.items()):
        if name not in states or states[name].kind != StateKind.STATE or \
                not _per_element(new, states) or \
                any(isinstance(s, PreResult) for s in new.free_symbols):
            continue
        # only a state nothing after the pre-stage reads: later stages then compute from
        # exactly the values they did before (no stored, possibly narrower, copy is read)
        later = [e for k, e in elementwise.items() if k != name] + list(matrix_outputs.values())
        if not any(_reads(e, name) for e in later):
            pre[name] = elementwise.pop(name)
    return PrestageSplit(pre, matrix_outputs, elementwise, h.dtypes)
