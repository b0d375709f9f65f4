"""The compiler driver: Rule -> KernelPlan, as a fixed sequence of small passes."""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from ..dsl.matrix import Orthogonalize
from ..dsl.randomness import RandomSymbol
from ..dsl.rule import Rule
from ..dsl.symbols import (GradSymbol, ParamSymbol, StateDecl, StateSymbol, StepSymbol,
                           TensorSymbol, initial_lr, reads_initial_lr)
from .passes import cse, hoist_levels, pow_to_mul, split_matrix, split_prestage, split_reductions
from .passes import scoped_states
from .passes.hoist_scalars import Levels
from .passes.split_collectives import split_collectives, with_collectives
from .passes.split_prestage import PrestageSplit
from .plan import (KernelPlan, MatrixStage, ReduceKind, ReduceOp, ReduceResult, ReduceStage,
                   Scope, StageKind, StateKind, StorageDtype, TensorRef, TensorRole)


def lower(rule: Rule, hyper_symbols: list[sp.Symbol], guard_nonfinite: bool = False) -> KernelPlan:
    """Split reductions, hoist scalars, CSE, rewrite powers: the plan every backend prints.

    ``guard_nonfinite`` adds a count of the group's non-finite gradient elements to the
    first reduce stage (creating one if the rule has none), so the runtime can skip a
    step before anything is written.
    """
    loads, written = scoped_states.scoped_loads(rule, _written(rule))  # scoped states -> z<i>
    reduced = split_reductions(written)                                # reductions -> r<i>
    guard = _nonfinite_guard(reduced.stages) if guard_nonfinite else None  # count NaN/inf
    stage_ops = scoped_states.with_results_stage(_with_guard(reduced.stages, guard), loads)
    comm = split_collectives(rule.name, reduced.outputs, rule.states)  # collectives -> named
    matrix = split_matrix(comm.outputs, set(_matrix_states(rule)))  # matrix ops -> mat<i>
    pre = split_prestage(matrix.stage, matrix.elementwise, rule.states)  # their args -> pre<i>
    # + what the collectives send -> send_*; 1-bit results read packed by one-kernel stages
    pre = with_collectives(pre, comm, rule.states, packed_results=not stage_ops)
    levels = hoist_levels(pre.elementwise, _reduce_arguments(stage_ops), pre.matrix)  # s, m
    tensors = _Tensors.of(rule, _buffer_dtypes(pre, _matrix_states(rule)))  # kinds, dtypes
    levels.outputs, stores = scoped_states.take_stores(rule, levels.outputs)  # runtime-written
    plan = _assemble(rule, hyper_symbols, stage_ops, pre, levels, tensors, guard)
    plan.collectives = comm.ops
    plan.scoped_loads, plan.scoped_stores = loads, stores
    return plan


@dataclass
class _Tensors:
    """Every tensor a plan can touch, typed once: its ref (role, storage dtype) and, for
    states, inputs and buffers, its declaration (kind)."""

    refs: dict[str, TensorRef]
    states: dict[str, StateDecl]

    @classmethod
    def of(cls, rule: Rule, buffer_dtypes: dict[str, str]) -> "_Tensors":
        refs = {"p": TensorRef("p", TensorRole.PARAM), "g": TensorRef("g", TensorRole.GRAD)}
        states = {}
        for name, decl in rule.states.items():
            kind, dtype = StateKind(decl.kind), _storage(decl.dtype)
            states[name] = replace(decl, kind=kind, dtype=dtype)
            refs[name] = TensorRef(name, TensorRole(kind.value), dtype)
        for name, dtype in buffer_dtypes.items():  # pre<i>, then mat<i>: read-only states
            states[name] = StateDecl(name, sp.Integer(0), StorageDtype(dtype),
                                     kind=StateKind.BUFFER)
            refs[name] = TensorRef(name, TensorRole.BUFFER, StorageDtype(dtype))
        return cls(refs, states)

    def used(self, exprs) -> list[TensorRef]:
        """The tensors ``exprs`` read, in declaration order."""
        used = set()
        for e in exprs:
            used |= {s.name for s in e.free_symbols if isinstance(s, TensorSymbol)}
        return [ref for name, ref in self.refs.items() if name in used]


def _storage(dtype: str | None) -> StorageDtype | str | None:
    """A declared dtype, typed; one no backend knows stays a string, for the backend that
    cannot store it to refuse by name."""
    return StorageDtype(dtype) if dtype in tuple(StorageDtype) else dtype


def _written(rule: Rule) -> dict[str, sp.Expr]:
    """The rule's outputs, less ``Rule(p, m=m)``'s identities (already in memory)."""
    return {k: e for k, e in rule.outputs().items()
            if not (isinstance(e, (ParamSymbol, StateSymbol)) and e.name == k)}


def _matrix_states(rule: Rule) -> list[str]:
    return [n for n, d in rule.states.items() if d.kind == StateKind.MATRIX_STATE]


def _nonfinite_guard(stages: list[list[ReduceOp]]) -> ReduceOp:
    result = ReduceResult(f"r{sum(len(ops) for ops in stages)}", real=True)
    return ReduceOp(result, ReduceKind.NONFINITE, Scope.GROUP, GradSymbol("g", real=True))


def _with_guard(stages: list[list[ReduceOp]], guard: ReduceOp | None) -> list[list[ReduceOp]]:
    """The guard joins the first reduce stage (one is made when the rule has none)."""
    if guard is None:
        return stages
    return [[guard] + (stages[0] if stages else [])] + stages[1:]


def _reduce_arguments(stage_ops: list[list[ReduceOp]]) -> dict[str, sp.Expr]:
    return {str(r.result): r.expr for ops in stage_ops for r in ops if not r.op.from_shape}


def _buffer_dtypes(pre: PrestageSplit, matrix_states: list[str]) -> dict[str, str]:
    """Each buffer's storage dtype: the ``pre<i>`` the pass chose, then each ``mat<i>``
    (an orthogonalize result is stored as computed, the rest in float32)."""
    dtypes = dict(pre.buffer_dtypes)
    for name, e in pre.matrix.items():
        if name not in matrix_states:
            dtypes[name] = e.dtype if isinstance(e, Orthogonalize) else "float32"
    return dtypes


@dataclass
class _Optimized:
    prologue: list[tuple[sp.Symbol, sp.Expr]]
    scalar_args: list[sp.Symbol]
    temps: list[tuple[sp.Symbol, sp.Expr]]
    outputs: dict[str, sp.Expr]

    @property
    def exprs(self) -> list[sp.Expr]:
        return [e for _, e in self.temps] + list(self.outputs.values())


def _optimized(prologue: list, outputs: dict) -> _Optimized:
    """CSE of the host prologue (its hoisted scalars stay the kernel's arguments) and of
    the per-element outputs, powers as products."""
    scalar_args = [s for s, _ in prologue]
    # Guarded values (a where() branch's scalars) stay whole: CSE would pull their parts
    # out of the condition and evaluate them on every step.
    shared = {str(s): e for s, e in prologue if not e.has(sp.Piecewise)}
    host_temps, host_values = cse(shared, prefix="h")
    prologue = host_temps + [(s, host_values.get(str(s), e)) for s, e in prologue]
    temps, outputs = cse(outputs)
    temps, outputs = pow_to_mul(temps, outputs)
    return _Optimized(prologue, scalar_args, temps, outputs)


def _reduce_stage(ops: list[ReduceOp], reduce_args: dict, tensors: _Tensors) -> ReduceStage:
    args = {str(r.result): reduce_args[str(r.result)] for r in ops if not r.op.from_shape}
    temps, args = cse(args, prefix="q")
    temps, args = pow_to_mul(temps, args, prefix="q")
    ops = [ReduceOp(r.result, r.op, r.scope, args.get(str(r.result), r.expr), r.span)
           for r in ops]
    return ReduceStage(tensors.used([e for _, e in temps] + [r.expr for r in ops]), temps, ops)


def _matrix_stages(matrix_args: dict[str, sp.Expr], tensors: _Tensors) -> list[MatrixStage]:
    """One torch stage computing every buffer and matrix state (shared work once)."""
    if not matrix_args:
        return []
    temps, values = cse(matrix_args, prefix="q")
    states = frozenset(n for n in values if tensors.states[n].kind == StateKind.MATRIX_STATE)
    return [MatrixStage(tensors.used([e for _, e in temps] + list(values.values())), temps,
                        list(values.items()), states)]


def _stores(tensors: _Tensors, outputs: dict[str, sp.Expr]) -> list[tuple[TensorRef, sp.Expr]]:
    """States first, the parameter last: the order values are written."""
    order = [n for n in tensors.states if tensors.states[n].kind != StateKind.BUFFER] + ["p"]
    return [(tensors.refs[name], outputs[name]) for name in order if name in outputs]


def _pre_plan(rule: Rule, outputs: dict, tensors: _Tensors,
              prologue_inputs: list) -> KernelPlan | None:
    """The elementwise pre-stage as a plan of its own (no reductions, no matrix stage),
    over the same states as the main plan so one list of tensors serves both."""
    if not outputs:
        return None
    levels: Levels = hoist_levels(outputs)
    pre = _optimized(levels.prologue, levels.outputs)
    return KernelPlan(
        rule_name=f"{rule.name}:pre", kind=StageKind.PRE, randoms=dict(rule.randoms),
        prologue_inputs=prologue_inputs, prologue=pre.prologue, scalar_args=pre.scalar_args,
        loads=tensors.used(pre.exprs), temps=pre.temps,
        stores=[(tensors.refs[n], pre.outputs[n]) for n in tensors.states if n in pre.outputs],
        states=tensors.states)


def _assemble(rule: Rule, hyper_symbols, stage_ops, pre: PrestageSplit, levels: Levels,
              tensors: _Tensors, guard: ReduceOp | None) -> KernelPlan:
    main = _optimized(levels.prologue, levels.outputs)
    # initial_lr() only where the rule reads it (RuleSpec.hyper_values supplies it then)
    prologue_inputs = list(hyper_symbols) + [initial_lr()] * reads_initial_lr(rule) \
        + [RandomSymbol(n, real=True) for n in rule.randoms] + [StepSymbol("t", positive=True)]
    return KernelPlan(
        rule_name=rule.name, randoms=dict(rule.randoms), prologue_inputs=prologue_inputs,
        pre_plan=_pre_plan(rule, pre.pre, tensors, prologue_inputs),
        prologue=main.prologue, scalar_args=main.scalar_args,
        loads=tensors.used(main.exprs), temps=main.temps, stores=_stores(tensors, main.outputs),
        states=tensors.states,
        reduce_stages=[_reduce_stage(ops, levels.reduce_args, tensors) for ops in stage_ops],
        matrix_stages=_matrix_stages(levels.matrix_args, tensors),
        scope_temps=levels.scope_temps, nonfinite_check=guard.result if guard else None)
