"""The compiler driver: Rule -> KernelPlan, as a fixed sequence of small passes."""
from __future__ import annotations

import sympy as sp

from ..dsl.matrix import Orthogonalize
from ..dsl.rule import Rule
from ..dsl.randomness import RandomSymbol
from ..dsl.symbols import (GradSymbol, ParamSymbol, StateDecl, StateSymbol, StepSymbol,
                           TensorSymbol)
from .passes import cse, hoist_levels, pow_to_mul, split_matrix, split_prestage, split_reductions
from .plan import KernelPlan, MatrixStage, ReduceOp, ReduceResult, ReduceStage, TensorRef


def _tensor_refs(rule: Rule) -> dict[str, TensorRef]:
    refs = {"p": TensorRef("p", "param"), "g": TensorRef("g", "grad")}
    for name, decl in rule.states.items():
        refs[name] = TensorRef(name, decl.kind, decl.dtype)
    return refs


def _is_identity(name: str, expr: sp.Expr) -> bool:
    """``Rule(p, m=m)`` writes nothing: the value is already in memory."""
    return isinstance(expr, (ParamSymbol, StateSymbol)) and expr.name == name


def _used_tensors(refs: dict[str, TensorRef], exprs) -> list[TensorRef]:
    used = set()
    for e in exprs:
        used |= {s.name for s in e.free_symbols if isinstance(s, TensorSymbol)}
    return [ref for name, ref in refs.items() if name in used]


SHAPE_OPS = ("numel", "ndim")  # reductions answered from the shape, with no argument


def _reduce_stage(ops: list[ReduceOp], reduce_args: dict, refs) -> ReduceStage:
    args = {str(r.result): reduce_args[str(r.result)] for r in ops if r.op not in SHAPE_OPS}
    temps, args = cse(args, prefix="q")
    temps, args = pow_to_mul(temps, args, prefix="q")
    ops = [ReduceOp(r.result, r.op, r.scope, args.get(str(r.result), r.expr), r.span)
           for r in ops]
    loads = _used_tensors(refs, [e for _, e in temps] + [r.expr for r in ops])
    return ReduceStage(loads, temps, ops)


def _matrix_stage(stage_args: dict, names: list[str], refs,
                  state_names: set[str]) -> MatrixStage:
    """One torch stage computing every buffer and matrix state (shared work once)."""
    temps, values = cse({n: stage_args[f"matrix:{n}"] for n in names}, prefix="q")
    loads = _used_tensors(refs, [e for _, e in temps] + list(values.values()))
    return MatrixStage(loads, temps, [(n, values[n]) for n in names],
                       frozenset(n for n in names if n in state_names))


def _optimized(prologue: list, outputs: dict):
    """CSE of the host prologue (its hoisted scalars stay the kernel's arguments) and of
    the per-element outputs, powers as products: (prologue, scalar args, temps, outputs)."""
    scalar_args = [s for s, _ in prologue]
    # Guarded values (a where() branch's scalars) stay whole: CSE would pull their parts
    # out of the condition and evaluate them on every step.
    shared = {str(s): e for s, e in prologue if not e.has(sp.Piecewise)}
    host_temps, host_values = cse(shared, prefix="h")
    prologue = host_temps + [(s, host_values.get(str(s), e)) for s, e in prologue]
    temps, outputs = cse(outputs)
    temps, outputs = pow_to_mul(temps, outputs)
    return prologue, scalar_args, temps, outputs


def _pre_plan(rule: Rule, outputs: dict, states: dict, refs: dict,
              prologue_inputs: list) -> KernelPlan | None:
    """The elementwise pre-stage as a plan of its own (no reductions, no matrix stage),
    over the same states as the main plan so one list of tensors serves both."""
    if not outputs:
        return None
    prologue, _, outputs, _ = hoist_levels(outputs)
    prologue, scalar_args, temps, outputs = _optimized(prologue, outputs)
    return KernelPlan(
        rule_name=f"{rule.name}:pre",
        randoms=dict(rule.randoms),
        prologue_inputs=prologue_inputs,
        prologue=prologue,
        scalar_args=scalar_args,
        loads=_used_tensors(refs, [e for _, e in temps] + list(outputs.values())),
        temps=temps,
        stores=[(refs[name], outputs[name]) for name in states if name in outputs],
        states=states,
    )


def lower(rule: Rule, hyper_symbols: list[sp.Symbol], guard_nonfinite: bool = False) -> KernelPlan:
    """Split reductions, hoist scalars, CSE, rewrite powers: the plan every backend prints.

    ``guard_nonfinite`` adds a count of the group's non-finite gradient elements to the
    first reduce stage (creating one if the rule has none), so the runtime can skip a
    step before anything is written.
    """
    outputs = {k: e for k, e in rule.outputs().items() if not _is_identity(k, e)}
    stage_ops, outputs = split_reductions(outputs)
    check = None
    if guard_nonfinite:
        check = ReduceResult(f"r{sum(len(ops) for ops in stage_ops)}", real=True)
        guard = ReduceOp(check, "nonfinite", "group", GradSymbol("g", real=True))
        stage_ops = [[guard] + (stage_ops[0] if stage_ops else [])] + stage_ops[1:]
    matrix_state_names = {n for n, d in rule.states.items() if d.kind == "matrix"}
    matrix_outputs, outputs = split_matrix(outputs, matrix_state_names)
    pre_outputs, matrix_outputs, outputs, buffer_dtypes = split_prestage(
        matrix_outputs, outputs, rule.states)
    for name, e in matrix_outputs.items():  # an orthogonalize result, stored as computed
        if name not in matrix_state_names:
            buffer_dtypes[name] = e.dtype if isinstance(e, Orthogonalize) else "float32"
    stage_args = {str(r.result): r.expr for ops in stage_ops for r in ops if r.op not in SHAPE_OPS}
    stage_args.update({f"matrix:{n}": e for n, e in matrix_outputs.items()})
    prologue, scope_temps, outputs, reduce_args = hoist_levels(outputs, stage_args)
    prologue, scalar_args, temps, outputs = _optimized(prologue, outputs)
    refs = _tensor_refs(rule)
    states = dict(rule.states)
    for name, dtype in buffer_dtypes.items():  # pre<i>, then mat<i>: read-only states
        states[name] = StateDecl(name, sp.Integer(0), dtype, kind="buffer")
        refs[name] = TensorRef(name, "buffer", dtype)
    reduce_stages = [_reduce_stage(ops, reduce_args, refs) for ops in stage_ops]
    matrix_stages = [_matrix_stage(reduce_args, list(matrix_outputs), refs,
                                   matrix_state_names)] \
        if matrix_outputs else []
    prologue_inputs = list(hyper_symbols) + [RandomSymbol(n, real=True) for n in rule.randoms] \
        + [StepSymbol("t", positive=True)]

    # States first, the parameter last: the order values are written.
    stores = [(refs[name], outputs[name]) for name in list(rule.states) + ["p"] if name in outputs]
    return KernelPlan(
        rule_name=rule.name,
        randoms=dict(rule.randoms),
        prologue_inputs=prologue_inputs,
        pre_plan=_pre_plan(rule, pre_outputs, states, refs, prologue_inputs),
        prologue=prologue,
        scalar_args=scalar_args,
        loads=_used_tensors(refs, [e for _, e in temps] + list(outputs.values())),
        temps=temps,
        stores=stores,
        states=states,
        reduce_stages=reduce_stages,
        matrix_stages=matrix_stages,
        scope_temps=scope_temps,
        nonfinite_check=check,
    )
