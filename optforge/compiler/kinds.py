"""The plan's vocabulary: the kinds of stages, states, tensors, reductions and roundings.

Each is a StrEnum whose values are the strings the DSL and the runtime have always used
("matrix", "row", "sum"...), so a field compares equal to them and prints as them in
generated code. The compiler sets every such field of a plan once (``lower.py``), and
nothing downstream recovers a kind from a name.
"""
from __future__ import annotations

from enum import StrEnum


class StageKind(StrEnum):
    """The passes of one step, in the order they run."""
    REDUCE = "reduce"            # reductions only, writes nothing
    PRE = "pre"                  # the elementwise pre-stage (a plan of its own)
    MATRIX = "matrix"            # whole-tensor torch math per parameter
    ELEMENTWISE = "elementwise"  # the fused per-element update


class StateKind(StrEnum):
    """What a tensor beside the parameter is (``plan.states[name].kind``)."""
    STATE = "state"          # per element, kept in ``optimizer.state``
    MATRIX_STATE = "matrix"  # matrix-shaped, kept in ``optimizer.state``, written by the
    #                          matrix stage
    INPUT = "input"          # supplied by the runtime every step, never stored
    BUFFER = "buffer"        # a pre-stage or matrix-stage result, read-only afterwards
    SCOPED = "scoped"        # one value per tensor, row, column, group or optimizer, kept in
    #                          ``optimizer.state``; read like a reduction result, written by
    #                          the runtime (compiler/passes/scoped_states.py)

    @property
    def stored(self) -> bool:
        return self in (StateKind.STATE, StateKind.MATRIX_STATE, StateKind.SCOPED)


# What a tensor a kernel touches is: the parameter, its gradient, or a state's kind (the
# StateKind members, by construction: a new state kind is a new role).
TensorRole = StrEnum("TensorRole", {"PARAM": "param", "GRAD": "grad",
                                    **{kind.name: kind.value for kind in StateKind}},
                     module=__name__)


class StorageDtype(StrEnum):
    FLOAT64 = "float64"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    # the 1-bit collectives' buffers, uint8 (compiler/packed_signs.py has the layout): what
    # a worker sends (a flag byte, then 1 bit per element) and every worker's, gathered
    SIGN_BITS = "sign_bits"
    SIGN_VOTES = "sign_votes"

    @property
    def half(self) -> bool:
        return self in (StorageDtype.BFLOAT16, StorageDtype.FLOAT16)


class Rounding(StrEnum):
    """How a float32 value is stored into a narrower tensor."""
    NEAREST_EVEN = "nearest"
    STOCHASTIC = "stochastic"


class ReduceKind(StrEnum):
    SUM = "sum"
    MAX = "max"
    NUMEL = "numel"
    NDIM = "ndim"
    NONFINITE = "nonfinite"  # how many elements are NaN or infinite
    STATE = "state"  # a scoped state's current value: supplied by the runtime, no kernel

    @property
    def from_shape(self) -> bool:
        """Answered from the tensor's shape: nothing to reduce."""
        return self in (ReduceKind.NUMEL, ReduceKind.NDIM)


class Scope(StrEnum):
    """What a reduction reduces over."""
    TENSOR = "tensor"
    ROW = "row"  # of the tensor's (shape[0], -1) view
    COL = "col"
    GROUP = "group"  # every tensor of the param group


class ResultKind(StrEnum):
    """The finest index a reduction result (or a value computed from results) varies with."""
    SCALAR = "scalar"  # one per tensor
    ROW = "row"
    COL = "col"        # also a value using both row and column results (per element)

    @property
    def rank(self) -> int:
        return (ResultKind.SCALAR, ResultKind.ROW, ResultKind.COL).index(self)
