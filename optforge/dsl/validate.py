"""Checks a built Rule against what the compiler can lower: every error names the expression."""
from __future__ import annotations

import sympy as sp
from sympy.logic.boolalg import And, BooleanFalse, BooleanTrue, Not, Or
from sympy.core.relational import Relational

from .errors import DSLError
from .matrix import MatrixOp, Orthogonalize
from .randomness import RandomSymbol
from .reductions import NDim, Numel, Reduction
from .rule import Rule
from .symbols import (GradSymbol, HyperSymbol, InputSymbol, ParamSymbol, StateSymbol,
                      StepSymbol)

# The node types every printer supports. Anything else is refused here, not in a backend.
ELEMENTWISE_NODES = (sp.Add, sp.Mul, sp.Pow, sp.Abs, sp.sign, sp.exp, sp.log, sp.Max, sp.Min)
BOOLEAN_NODES = (And, Or, Not)


def _show(expr) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= 160 else text[:157] + "..."


class _Checker:
    def __init__(self, rule: Rule, hypers: set[sp.Symbol]):
        self.rule, self.hypers = rule, hypers
        self.where, self.expr = "", None

    def fail(self, problem: str, node) -> None:
        context = "" if node == self.expr else f" in {_show(self.expr)}"
        raise DSLError(f"rule {self.rule.name!r}, {self.where}: {problem}: {_show(node)}"
                       f"{context}")

    def value(self, e) -> None:
        if isinstance(e, (Relational, BooleanTrue, BooleanFalse) + BOOLEAN_NODES):
            self.fail("a comparison is used as a number (use where(cond, a, b))", e)
        if isinstance(e, Reduction):
            self.reduction(e)
            return
        if isinstance(e, Orthogonalize):
            self.matrix_stage(e)
            return
        if isinstance(e, MatrixOp) or getattr(e, "is_Matrix", False) or isinstance(
                e, (sp.MatrixBase, sp.MatrixExpr)):
            self.fail(f"matrix operation {type(e).__name__}() is not supported yet "
                      "(orthogonalize is)", e)
        if e.is_Symbol:
            self.symbol(e)
        elif e in (sp.zoo, sp.oo, -sp.oo, sp.nan):
            self.fail("the constant is not finite (division by zero or infinity?)", e)
        elif e.is_Number or isinstance(e, sp.NumberSymbol):
            if e is sp.nan or e.is_finite is False:
                self.fail("the constant is not finite (division by zero or infinity?)", e)
        elif e is sp.I:
            self.fail("complex numbers are not supported", e)
        elif isinstance(e, sp.Piecewise):
            for branch, cond in e.args:
                self.value(branch)
                self.condition(cond)
        elif isinstance(e, ELEMENTWISE_NODES):
            for a in e.args:
                self.value(a)
        else:
            self.fail(f"unsupported operation {type(e).__name__} (supported: sqrt, rsqrt, abs, "
                      "sign, exp, log, pow, maximum, minimum, clamp, lerp, where, + - * /)", e)

    def reduction(self, e) -> None:
        if not isinstance(e, (Numel, NDim)):  # nested ones become successive reduce stages
            if e.args[0].has(Orthogonalize):
                self.fail("a reduction of a matrix operation's result is not supported yet", e)
            self.value(e.args[0])

    def matrix_stage(self, e) -> None:
        if e.args[0].has(Orthogonalize):
            self.fail("a matrix operation inside another is not supported yet", e)
        for a in e.args[:-1]:
            self.value(a)

    def condition(self, c) -> None:
        if isinstance(c, (BooleanTrue, BooleanFalse)):
            return
        if isinstance(c, Relational):
            self.value(c.lhs)
            self.value(c.rhs)
        elif isinstance(c, BOOLEAN_NODES):
            for a in c.args:
                self.condition(a)
        else:
            self.fail("a where() condition must be a comparison", c)

    def symbol(self, s) -> None:
        if isinstance(s, (ParamSymbol, GradSymbol, StepSymbol, StateSymbol)):
            return
        if isinstance(s, InputSymbol) and s.name in self.rule.states:
            return
        if isinstance(s, RandomSymbol) and s.name in self.rule.randoms:
            return
        if isinstance(s, HyperSymbol) and s in self.hypers:
            return
        self.fail(f"unknown symbol {s} (use param(), grad(), step(), state(...) or a "
                  "keyword hyperparameter of the rule function)", s)


def validate(rule: Rule, hypers: set[sp.Symbol]) -> None:
    """Raise DSLError for the first problem found in ``rule``."""
    checker = _Checker(rule, hypers)
    for name, expr in rule.outputs().items():
        checker.where = "new parameter" if name == "p" else f"new value of state {name!r}"
        checker.expr = expr
        checker.value(expr)
    clash = sorted(set(rule.randoms) & {h.name for h in hypers})
    if clash:
        raise DSLError(f"rule {rule.name!r}: random scalar {clash[0]!r} has the name of a "
                       "hyperparameter; rename one of them")
    inputs = {n for n, d in rule.states.items() if d.kind == "input"}
    for name in rule.updates:
        if name in inputs:
            raise DSLError(f"rule {rule.name!r}: Rule(...) writes {name!r}, an input "
                           "(given(...)) the runtime supplies; inputs are read-only")
    declared = set(rule.states) - inputs
    for name in rule.updates:
        if name not in declared:
            raise DSLError(f"rule {rule.name!r}: Rule(...) writes {name!r}, which was never "
                           f"declared with state({name!r}) (declared: {sorted(declared) or 'none'})")
    read = {s.name for e in rule.outputs().values() for s in e.free_symbols
            if isinstance(s, StateSymbol)}
    for name in sorted(read - declared):
        raise DSLError(f"rule {rule.name!r}: state {name!r} is read but was not declared "
                       "inside this rule function")
    for name in sorted(declared - set(rule.updates)):
        raise DSLError(f"rule {rule.name!r}: state {name!r} is declared but never written; "
                       f"add {name}=<new value> to Rule(...)")
