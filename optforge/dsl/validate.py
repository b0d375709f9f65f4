"""Checks a built Rule against what the compiler can lower: every error names the expression."""
from __future__ import annotations

import sympy as sp
from sympy.logic.boolalg import And, BooleanFalse, BooleanTrue, Not, Or
from sympy.core.relational import Relational

from .cast import Cast
from .collectives import Collective
from .errors import DSLError
from .matrix import MatrixOp
from .matrix_shapes import PARAM, SCALAR, ShapeChecker, show_shape
from .randomness import RandomSymbol
from .reductions import NDim, Numel, Reduction
from .rule import Rule
from .scoped import ScopedState, write_problem
from .symbols import (GradSymbol, HyperSymbol, InitialLrSymbol, InputSymbol, ParamSymbol,
                      StateSymbol, StepSymbol, is_tensor_expr)

# The node types every printer supports. Anything else is refused here, not in a backend.
ELEMENTWISE_NODES = (sp.Add, sp.Mul, sp.Pow, sp.Abs, sp.sign, sp.exp, sp.log, sp.Max, sp.Min,
                     Cast)
BOOLEAN_NODES = (And, Or, Not)


def _show(expr) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= 160 else text[:157] + "..."


class _Checker:
    def __init__(self, rule: Rule, hypers: set[sp.Symbol]):
        self.rule, self.hypers = rule, hypers
        self.where, self.expr = "", None
        self.in_matrix = False  # inside a matrix operation, or a matrix state's new value
        self.shapes = ShapeChecker(rule.name, rule.states)

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
        if isinstance(e, ScopedState):
            if self.rule.states.get(e.name) is None:
                self.fail(f"scoped state {e.name!r} was not declared in this rule function", e)
            return
        if isinstance(e, MatrixOp):
            self.matrix_op(e)
            return
        if isinstance(e, Collective):
            self.collective(e)
            return
        if getattr(e, "is_Matrix", False) or isinstance(e, (sp.MatrixBase, sp.MatrixExpr)):
            self.fail("SymPy matrices are not supported (use matmul, transpose... from "
                      "optforge.dsl on tensors)", e)
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
        elif isinstance(e, Cast):
            self.value(e.args[0])  # args[1] is the dtype's index, not a value
        elif isinstance(e, ELEMENTWISE_NODES):
            for a in e.args:
                self.value(a)
        elif isinstance(e, sp.Mod):
            self.modulo(e)
        else:
            self.fail(f"unsupported operation {type(e).__name__} (supported: sqrt, rsqrt, abs, "
                      "sign, exp, log, pow, maximum, minimum, clamp, lerp, where, cast, + - * /)", e)

    def modulo(self, e) -> None:
        """``t % k``: a host-side scalar (periodic steps); per element it is refused (the
        kernels' printers have no modulo, and C's and Python's disagree on signs)."""
        if is_tensor_expr(e) or e.has(Reduction, MatrixOp):
            self.fail("% (modulo) works on scalars only: the step and hyperparameters "
                      "(periodic steps: every(k, value, otherwise) or where(eq(step() % k, "
                      "0), ...))", e)
        for a in e.args:
            self.value(a)

    def reduction(self, e) -> None:
        if not isinstance(e, (Numel, NDim)):  # nested ones become successive reduce stages
            if e.args[0].has(MatrixOp):
                self.fail("a reduction of a matrix operation's result is not supported (use "
                          "fnorm or trace inside the matrix expression)", e)
            if e.args[0].has(Collective):
                self.fail("a reduction of a collective's result (allreduce, majority_vote) "
                          "is not supported", e)
            self.value(e.args[0])

    def matrix_op(self, e) -> None:
        """An outermost matrix operation of an elementwise expression: its result must be
        shaped like the parameter's 2-D view (or be a scalar)."""
        outer = not self.in_matrix
        if outer:
            shape = self.shapes.shape(e)
            if shape not in (PARAM, SCALAR):
                self.fail(f"this matrix expression is {show_shape(shape)}, but the "
                          f"parameter's update needs {show_shape(PARAM)} or a scalar", e)
        self.in_matrix = True
        try:
            for a in e.args:
                self.value(a)
        finally:
            self.in_matrix = not outer

    def collective(self, e) -> None:
        """allreduce / majority_vote: their argument was checked when made (elementwise,
        a sign for 1 bit); the compiler cuts them out of the elementwise stage only."""
        if self.in_matrix:
            self.fail("a collective (allreduce, majority_vote) inside a matrix operation is "
                      "not supported", e)
        self.value(e.value)

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
        decl = self.rule.states.get(s.name)
        if decl is not None and decl.shape and not self.in_matrix:
            self.fail(f"{s} is matrix-shaped {show_shape(decl.shape)}; use it inside a "
                      "matrix operation (matmul, ...)", s)
        if isinstance(s, (ParamSymbol, GradSymbol, StepSymbol, StateSymbol)):
            return
        if isinstance(s, InputSymbol) and s.name in self.rule.states:
            return
        if isinstance(s, RandomSymbol) and s.name in self.rule.randoms:
            return
        if isinstance(s, HyperSymbol) and s in self.hypers or isinstance(s, InitialLrSymbol):
            return
        self.fail(f"unknown symbol {s} (use param(), grad(), step(), state(...) or a "
                  "keyword hyperparameter of the rule function)", s)


def validate(rule: Rule, hypers: set[sp.Symbol]) -> None:
    """Raise DSLError for the first problem found in ``rule``."""
    checker = _Checker(rule, hypers)
    for name, expr in rule.outputs().items():
        checker.where = "new parameter" if name == "p" else f"new value of state {name!r}"
        checker.expr = expr
        decl = rule.states.get(name)
        checker.in_matrix = decl is not None and decl.kind == "matrix"
        checker.value(expr)
        if decl is not None and decl.kind == "scoped":
            problem = write_problem(decl.scope, expr)
            if problem:
                checker.fail(f"state {name!r}: {problem}", expr)
        if checker.in_matrix:
            shape = checker.shapes.shape(expr)
            if shape not in (tuple(decl.shape), SCALAR):
                checker.fail(f"the new value is {show_shape(shape)}, but matrix state {name!r} "
                             f"is {show_shape(decl.shape)}", expr)
        checker.in_matrix = False
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
