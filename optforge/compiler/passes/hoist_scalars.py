"""Move everything that is not per-element out of the elementwise stage.

A value has one of three *levels*:

0. a group scalar (hyperparameters and ``t``): computed once per group per step in
   float64 on the host, passed to kernels as ``s0, s1...`` (the prologue);
1. a per-scope value (it uses a reduction result ``r0...``): computed once per tensor,
   row, column or group, as ``m0, m1...``;
2. a per-element value (it reads a tensor): computed in the kernel.

``(1 - beta1) * g`` becomes ``s0 * g`` with ``s0 = 1 - beta1``. Inside a sum or product
all lower-level operands are grouped into one temporary (``-lr * wd * p`` -> ``s1 * p``;
``-lr * r0 * u`` -> ``m0 * u`` with ``m0 = s2 * r0``), so the kernel does one multiply.
A lower-level condition with per-element branches (``where(t > 1, a, b)``) becomes a
0/1 value ``s`` tested as ``s != 0``. Scalars hoisted out of a branch whose choice is a
group scalar are *guarded*: ``where(t > 5, sqrt(t - 3) * g, g)`` hoists
``s1 = sqrt(t - 3) if t > 5 else 0``, so the host evaluates only the taken branch, as the
rule reads (unguarded, step 1 failed with a math domain error).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.core.relational import Relational
from sympy.logic.boolalg import Boolean, BooleanFalse, BooleanTrue

from ...dsl.symbols import is_tensor_expr
from ..plan import ReduceResult, ScalarTemp, ScopeTemp


def level(e: sp.Basic) -> int:
    if is_tensor_expr(e):
        return 2
    return 1 if any(isinstance(s, (ReduceResult, ScopeTemp)) for s in e.free_symbols) else 0


class _Hoister:
    def __init__(self):
        self.scalars: dict[sp.Expr, ScalarTemp] = {}
        self.scoped: dict[sp.Expr, tuple[ScopeTemp, sp.Expr]] = {}
        self.guards: list = []  # scalar conditions under which the current branch is taken

    def temp(self, e: sp.Expr) -> sp.Expr:
        if e.is_Number or isinstance(e, (ReduceResult, ScopeTemp)):
            return e
        if level(e) == 0 and self.guards:  # evaluated on the host only when taken
            e = sp.Piecewise((e, sp.And(*self.guards)), (sp.Integer(0), True))
        if level(e) == 0:
            if e not in self.scalars:
                self.scalars[e] = ScalarTemp(f"s{len(self.scalars)}", real=True)
            return self.scalars[e]
        if e not in self.scoped:
            value = self.expr(e, at=1)
            self.scoped[e] = (ScopeTemp(f"m{len(self.scoped)}", real=True), value)
        return self.scoped[e][0]

    def cond(self, c, at: int):
        if isinstance(c, (BooleanTrue, BooleanFalse)):
            return c
        if level(c) < at:
            return sp.Ne(self.temp(sp.Piecewise((sp.Integer(1), c), (sp.Integer(0), True))), 0)
        if isinstance(c, Relational):
            return c.func(self.expr(c.lhs, at), self.expr(c.rhs, at))
        return c.func(*[self.cond(a, at) for a in c.args])

    def piecewise(self, e: sp.Piecewise, at: int) -> sp.Expr:
        """A where(): when every condition is a group scalar, each branch's hoisted scalars
        are guarded by the conditions that select it (earlier ones false, its own true)."""
        scalar_choice = all(level(c) == 0 for _, c in e.args)
        branches, earlier = [], []
        for value, c in e.args:
            guard = sp.And(*[sp.Not(x) for x in earlier], c) if scalar_choice else sp.true
            pushed = guard is not sp.true
            if pushed:
                self.guards.append(guard)
            try:
                branches.append((self.expr(value, at), self.cond(c, at)))
            finally:
                if pushed:
                    self.guards.pop()
            earlier.append(c)
        return sp.Piecewise(*branches)

    def expr(self, e: sp.Expr, at: int = 2) -> sp.Expr:
        """``e`` as computed at level ``at``, lower-level parts replaced by temporaries."""
        if level(e) < at:
            return self.temp(e)
        if e.is_Symbol:
            return e
        if isinstance(e, (sp.Add, sp.Mul)):
            low = [a for a in e.args if level(a) < at]
            high = [self.expr(a, at) for a in e.args if level(a) >= at]
            if low:
                high.insert(0, self.temp(e.func(*low)))
            return e.func(*high)
        if isinstance(e, sp.Piecewise):
            return self.piecewise(e, at)
        if isinstance(e, (Relational, Boolean)):
            return self.cond(e, at)
        return e.func(*[self.expr(a, at) for a in e.args])


@dataclass
class Levels:
    """A stage's expressions with their scalar and per-scope parts hoisted out."""
    prologue: list[tuple[ScalarTemp, sp.Expr]]  # group scalars ``s<i>``, host float64
    scope_temps: list[tuple[ScopeTemp, sp.Expr]]  # per-scope values ``m<i>``
    outputs: dict[str, sp.Expr]  # the elementwise stage's outputs
    reduce_args: dict[str, sp.Expr]  # each reduction's argument, by result name
    matrix_args: dict[str, sp.Expr]  # each matrix-stage output, by name


def hoist_levels(outputs: dict[str, sp.Expr], reduce_args: dict[str, sp.Expr] | None = None,
                 matrix_args: dict[str, sp.Expr] | None = None) -> Levels:
    """Hoist every expression through one hoister, so equal scalars share one ``s<i>``:
    the reduce arguments first, then the matrix outputs, then the elementwise outputs."""
    h = _Hoister()
    reduce_args = {k: h.expr(e) for k, e in (reduce_args or {}).items()}
    matrix_args = {k: h.expr(e) for k, e in (matrix_args or {}).items()}
    rewritten = {name: h.expr(e) for name, e in outputs.items()}
    prologue = [(sym, e) for e, sym in h.scalars.items()]
    return Levels(prologue, list(h.scoped.values()), rewritten, reduce_args, matrix_args)


def hoist_scalars(outputs: dict[str, sp.Expr]) -> tuple[list[tuple[ScalarTemp, sp.Expr]],
                                                        dict[str, sp.Expr]]:
    """Return (prologue assignments, outputs rewritten over the scalar temporaries)."""
    levels = hoist_levels(outputs)
    return levels.prologue, levels.outputs
