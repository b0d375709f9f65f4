"""KernelPlan: everything a backend needs to emit one optimizer step, and nothing device-specific.

A plan has two parts:

* the host *prologue*: scalar-only subexpressions (bias corrections, ``1 - beta``,
  ``-lr``...) computed once per param group per step in float64 and passed to the
  kernel as run-time scalars ``s0, s1, ...``;
* the *elementwise stage*: per-element temporaries ``e0, e1, ...`` then one value
  per written tensor, computed in float32 from the loaded tensors and the scalars.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import sympy as sp

from ..dsl.symbols import StateDecl, TensorSymbol

from .collective_ops import CollectiveOp

from .kinds import (ReduceKind, ResultKind, Rounding, Scope, StageKind, StateKind,
                    StorageDtype, TensorRole)

__all__ = ["ElemTemp", "KernelPlan", "MatrixResult", "MatrixStage", "PreResult", "ReduceKind",
           "ReduceOp", "ReduceResult", "ReduceStage", "ResultKind", "Rounding", "ScalarTemp",
           "Scope", "ScopeTemp", "StageKind", "StateKind", "StorageDtype", "TensorRef",
           "TensorRole"]


class ScalarTemp(sp.Symbol):
    """A prologue result: one float per param group and step."""


class ElemTemp(sp.Symbol):
    """A per-element temporary of the elementwise stage (from CSE)."""


class ReduceResult(sp.Symbol):
    """The value of one reduction (``r0, r1...``): one per tensor, row, column or group."""


class ScopeTemp(sp.Symbol):
    """Math on reduction results (``m0 = sqrt(r0) / ...``): one value per reduction scope."""


@dataclass(frozen=True)
class ReduceOp:
    """``result = op over scope of expr``.

    Kernels see four scopes; a ``group`` scope's total spans ``span``: the param group,
    or every group of the optimizer (the DSL's ``over="optimizer"``), which only the
    runtime's totalling differs for (each tensor's partial is the same)."""

    result: ReduceResult
    op: ReduceKind
    scope: Scope
    expr: sp.Expr  # over loaded tensors, scalars and reduce-stage temporaries
    span: str = "group"  # "group" | "optimizer": what a group scope's total covers

    @property
    def shown_scope(self) -> str:
        return "optimizer" if self.span == "optimizer" else self.scope

    def __post_init__(self):  # the passes may name them as strings: typed here, once
        object.__setattr__(self, "op", ReduceKind(self.op))
        object.__setattr__(self, "scope", Scope(self.scope))

    @property
    def result_kind(self) -> ResultKind:
        if self.op.from_shape or self.scope in (Scope.TENSOR, Scope.GROUP):
            return ResultKind.SCALAR
        return ResultKind(self.scope.value)

    @property
    def from_shape(self) -> bool:
        """numel/ndim over one tensor, its rows or columns: known from the shape (over the
        group they are results like any other)."""
        return self.op.from_shape and self.scope != Scope.GROUP


class MatrixResult(TensorSymbol):
    """The per-element value a matrix stage produced (``mat0, mat1...``), read from a buffer."""


class PreResult(TensorSymbol):
    """A matrix operation's elementwise argument (``pre0, pre1...``), computed by the
    pre-stage kernel into a float32 buffer the matrix stage reads."""


@dataclass
class MatrixStage:
    """Whole-tensor torch math per parameter, after the reduce stages and before the
    elementwise stage: matmuls, factorizations, and the elementwise math around them.

    ``outputs`` are ``(name, expr)``: a buffer ``mat<i>`` the elementwise stage reads
    (a ``(rows, cols)`` matrix or a scalar, reshaped / broadcast to the parameter) or a
    matrix state's new value. Parameter-shaped loads are seen as their 2-D view.
    """

    loads: list["TensorRef"]
    temps: list[tuple[ElemTemp, sp.Expr]]  # shared subexpressions q0, q1...
    outputs: list[tuple[str, sp.Expr]]
    # which outputs are matrix states (StateKind.MATRIX_STATE, stored in optimizer.state),
    # set by the compiler from the rule's declarations; the rest are ``mat<i>`` buffers.
    # Never told apart by name: a state may be "mat_l".
    state_names: frozenset[str] = frozenset()

    @property
    def buffers(self) -> list[str]:
        return [name for name, _ in self.outputs if name not in self.state_names]

    @property
    def matrix_states(self) -> list[str]:
        return [name for name, _ in self.outputs if name in self.state_names]


@dataclass
class ReduceStage:
    """One pass over memory that computes reductions and writes nothing.

    Stage ``k`` may use the results of stages ``0..k-1`` (through ``ScopeTemp`` values):
    ``sum(max(Q + dot(g, p) - g, 0))`` needs ``dot(g, p)`` first.
    """

    loads: list["TensorRef"]
    temps: list[tuple[ElemTemp, sp.Expr]]
    reductions: list[ReduceOp]


@dataclass(frozen=True)
class TensorRef:
    """A tensor the kernel touches: the param ``p``, the grad ``g`` or a state."""

    name: str
    role: TensorRole
    dtype: StorageDtype | None = None  # None: the parameter's dtype
    # how a store into it rounds where it is 16-bit (set by compiler/rounding.py's
    # mark_stochastic from the storage options; abi.roundings answers per backend)
    rounding: Rounding = Rounding.NEAREST_EVEN

    def __post_init__(self):  # typed here once, however the compiler spelled them
        object.__setattr__(self, "role", TensorRole(self.role))
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        if self.dtype in tuple(StorageDtype):
            object.__setattr__(self, "dtype", StorageDtype(self.dtype))


@dataclass
class KernelPlan:
    rule_name: str
    prologue_inputs: list[sp.Symbol]  # hyperparameters, random scalars, then the step ``t``
    prologue: list[tuple[sp.Symbol, sp.Expr]]  # host temporaries, in evaluation order
    scalar_args: list[ScalarTemp]  # prologue values the kernel receives, in order
    loads: list[TensorRef]
    temps: list[tuple[ElemTemp, sp.Expr]]
    stores: list[tuple[TensorRef, sp.Expr]]
    states: dict[str, StateDecl] = field(default_factory=dict)
    # Reduce stages, run in order over every tensor before the elementwise stage, and the
    # per-scope math on their results; empty for purely elementwise rules (whose plans are
    # then exactly as before reductions existed).
    reduce_stages: list[ReduceStage] = field(default_factory=list)
    scope_temps: list[tuple[ScopeTemp, sp.Expr]] = field(default_factory=list)
    randoms: dict[str, str] = field(default_factory=dict)  # random scalar -> distribution
    # Matrix stages, run after the reduce stages and before the elementwise stage.
    matrix_stages: list[MatrixStage] = field(default_factory=list)
    # With skip_nonfinite: the stage-0 result counting the group's non-finite gradients.
    nonfinite_check: ReduceResult | None = None
    # The elementwise pre-stage: a plan of its own (same states), run after the reduce
    # stages and before the matrix stage; it writes the matrix stage's ``pre<i>`` inputs
    # and the per-element states nothing later reads the old value of.
    pre_plan: "KernelPlan | None" = None
    kind: StageKind = StageKind.ELEMENTWISE  # PRE for a pre-stage's plan
    # Reductions across data-parallel workers (allreduce, majority_vote), run by the
    # runtime after the pre-stage, which computes what they send (compiler/collective_ops.py)
    collectives: list[CollectiveOp] = field(default_factory=list)
    # Scoped states (compiler/passes/scoped_states.py): their current values, results the
    # runtime supplies ahead of every reduce stage's, and their new values (over results,
    # per-scope values and scalars), which the runtime computes and stores at commit.
    scoped_loads: list[ReduceOp] = field(default_factory=list)
    scoped_stores: list[tuple[str, sp.Expr]] = field(default_factory=list)

    def stages(self) -> list[tuple[StageKind, int]]:
        """The step's passes in the order they run: (kind, index within that kind)."""
        return ([(StageKind.REDUCE, k) for k in range(len(self.reduce_stages))]
                + ([(StageKind.PRE, 0)] if self.pre_plan is not None else [])
                + [(StageKind.MATRIX, k) for k in range(len(self.matrix_stages))]
                + [(StageKind.ELEMENTWISE, 0)])

    def states_of(self, *kinds: StateKind) -> list[str]:
        """The names of ``plan.states`` of the given kinds, in declaration order."""
        return [name for name, decl in self.states.items() if decl.kind in kinds]

    @property
    def reductions(self) -> list[ReduceOp]:
        """Every reduction of every stage, in stage order, after the scoped states' loads."""
        return self.scoped_loads + [r for stage in self.reduce_stages for r in stage.reductions]

    def describe(self) -> str:
        """A readable listing of the plan (used by ``optforge show``)."""
        lines = [f"# plan for {self.rule_name}", "# host prologue (float64, once per group/step):"]
        lines += [f"  {s} = {sp.sstr(e)}" for s, e in self.prologue]
        if self.scoped_loads:
            lines.append("# scoped states (read by the runtime, before the reduce stages):")
            lines += [f"  {r.result} = {r.expr} (one per {r.shown_scope})"
                      for r in self.scoped_loads]
        for k, stage in enumerate(self.reduce_stages):
            lines.append(f"# reduce stage {k} (float32 accumulation, writes nothing):")
            lines.append("  loads: " + ", ".join(r.name for r in stage.loads))
            lines += [f"  {s} = {sp.sstr(e)}" for s, e in stage.temps]
            lines += [f"  {r.result} = {r.op} over {r.shown_scope} of {sp.sstr(r.expr)}"
                      for r in stage.reductions]
        if self.pre_plan is not None:
            pre = self.pre_plan
            lines.append("# elementwise pre-stage (float32, one fused pass before the matrix "
                         "stage):")
            lines += [f"  {s} = {sp.sstr(e)}  (host)" for s, e in pre.prologue]
            lines.append("  loads: " + ", ".join(r.name for r in pre.loads))
            lines += [f"  {s} = {sp.sstr(e)}" for s, e in pre.temps]
            lines += [f"  {r.name} <- {sp.sstr(e)}" + (
                "  (packed: 1 bit per element, set where >= 0)"
                if r.dtype == StorageDtype.SIGN_BITS else "") for r, e in pre.stores]
        if self.collectives:
            lines.append("# collectives (one exchange per step over the process group):")
            lines += [op.describe() for op in self.collectives]
            counted = [r.name for r in self.loads if r.dtype == StorageDtype.SIGN_VOTES]
            if counted:
                lines.append(f"  (the elementwise kernel counts {', '.join(counted)} from "
                             "every worker's gathered bits)")
        for stage in self.matrix_stages:
            lines.append("# matrix stage (torch matmul / linalg, per parameter, 2-D views):")
            lines.append("  loads: " + ", ".join(r.name for r in stage.loads))
            lines += [f"  {s} = {sp.sstr(e)}" for s, e in stage.temps]
            lines += [f"  {name} <- {sp.sstr(e)}" for name, e in stage.outputs]
        if self.scope_temps:
            lines.append("# per-scope values (once per tensor, row, column or group):")
            lines += [f"  {s} = {sp.sstr(e)}" for s, e in self.scope_temps]
        lines.append("# elementwise stage (float32):")
        lines.append("  loads: " + ", ".join(r.name for r in self.loads))
        lines += [f"  {s} = {sp.sstr(e)}" for s, e in self.temps]
        lines += [f"  {r.name} <- {sp.sstr(e)}" for r, e in self.stores]
        if self.scoped_stores:
            lines.append("# scoped states' new values (stored by the runtime at commit):")
            lines += [f"  {name} <- {sp.sstr(e)}" for name, e in self.scoped_stores]
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """A content hash: equal plans share generated code and caches."""
        text = self.describe() + repr(sorted((r.name, _text(r.role), _text(r.dtype))
                                             for r in self.loads)) \
            + repr([(r.name, _text(r.dtype)) for r, _ in self.stores]) \
            + repr([str(s) for s in self.prologue_inputs])
        stochastic = sorted(r.name for r, _ in self.stores
                            if r.rounding != Rounding.NEAREST_EVEN)
        if stochastic:  # (only then: every other plan keeps its fingerprint)
            text += repr(stochastic)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text(value) -> str | None:
    """An enum as its plain string (fingerprints predate the enums and must not change)."""
    return None if value is None else str(value)
