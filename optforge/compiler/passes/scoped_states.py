"""Scoped states (dsl/scoped.py) as reduction results: read like one, written by the runtime.

A scoped state holds one value per tensor, row, column, group or optimizer, so every
backend already has a way to read it: the way it reads a finished reduction of that
scope (a per-tensor scalar table, row/column vectors). This pass

* replaces each ``ScopedState`` node by a result ``z<i>`` whose ``ReduceOp`` has the
  kind ``STATE``: the runtime supplies the state's current value ahead of the reduce
  stages' results (``plan.scoped_loads``; runtime/scoped_states.py), no kernel reduces it;
* after hoisting, takes the scoped states' new values out of the elementwise stage: each
  is a result, a per-scope value ``m<i>`` or a group scalar ``s<i>``
  (``plan.scoped_stores``), which the runtime computes from the finished results and
  stores when the step commits (a step that fails or is skipped leaves them as they were);
* gives a plan that reads scoped states but reduces nothing one reduce stage that needs
  no pass over memory (a numel, answered from the shape), so every backend prints it as
  a multi-stage plan reading results.
"""
from __future__ import annotations

import sympy as sp

from ...dsl.scoped import ScopedState
from ..plan import ReduceKind, ReduceOp, ReduceResult, Scope

# a scoped state of scope "optimizer" is one value per group to the kernels; the runtime
# reads it from the first parameter holding it, as it totals optimizer-wide reductions
_KERNEL_SCOPE = {"optimizer": "group"}


def scoped_loads(rule, outputs: dict[str, sp.Expr]) -> tuple[list[ReduceOp], dict]:
    """(one STATE ReduceOp per scoped state of the rule, ``outputs`` reading them)."""
    loads, replace = [], {}
    for name, decl in rule.states.items():
        if decl.kind != "scoped":
            continue
        result = ReduceResult(f"z{len(loads)}", real=True)
        loads.append(ReduceOp(result, ReduceKind.STATE,
                              Scope(_KERNEL_SCOPE.get(decl.scope, decl.scope)),
                              sp.Symbol(name),
                              span="optimizer" if decl.scope == "optimizer" else "group"))
        replace[name] = result

    def load(e):
        return e.xreplace({n: replace[n.name] for n in sp.preorder_traversal(e)
                           if isinstance(n, ScopedState)})
    return loads, {k: load(e) for k, e in outputs.items()}


def with_results_stage(stage_ops: list[list[ReduceOp]],
                       loads: list[ReduceOp]) -> list[list[ReduceOp]]:
    """A plan that reads scoped states but has no reduce stage gets one from the shape."""
    if not loads or stage_ops:
        return stage_ops
    return [[ReduceOp(ReduceResult("r0", real=True), ReduceKind.NUMEL, Scope.TENSOR,
                      sp.Integer(1))]]


def take_stores(rule, outputs: dict[str, sp.Expr]) -> tuple[dict, list[tuple[str, sp.Expr]]]:
    """(the elementwise outputs, the scoped states' new values) of hoisted ``outputs``."""
    scoped = [n for n, d in rule.states.items() if d.kind == "scoped" and n in outputs]
    return ({k: e for k, e in outputs.items() if k not in scoped},
            [(n, outputs[n]) for n in scoped])
