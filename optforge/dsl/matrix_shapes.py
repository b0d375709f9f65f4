"""Shapes of matrix expressions, checked when a rule is built.

A shape is a tuple of symbolic dimensions: ``()`` for a scalar, else two of "rows",
"cols" (the parameter's 2-D view), "batch" (a layer's batch of activations) and 1.
Dimensions are compared by name, so a rule that is only right for square parameters
(``matmul(g, g)``) is refused even if the parameter at hand happens to be square.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .matrix import (AddDiagonal, BatchMean, BatchSize, Diagonal, Eigenvectors, Every, FNorm,
                     InvRoot, Inverse, MatMul, MatrixOp, Orthogonalize, PowerIteration,
                     ShermanMorrison, Solve, Trace, Transpose)
from .reductions import Reduction
from .symbols import InputSymbol, StateSymbol, TensorSymbol

PARAM = ("rows", "cols")
SCALAR = ()


def show_shape(shape: tuple) -> str:
    return "a scalar" if shape == SCALAR else "(" + ", ".join(str(d) for d in shape) + ")"


class ShapeChecker:
    """``shape(e)`` of an expression over the rule's declarations (states, inputs)."""

    def __init__(self, rule_name: str, decls: dict):
        self.rule_name, self.decls = rule_name, decls

    def fail(self, problem: str, e) -> None:
        raise DSLError(f"rule {self.rule_name!r}: {problem} in {sp.sstr(e)[:160]}")

    def broadcast(self, e, shapes: list[tuple]) -> tuple:
        out: tuple = SCALAR
        for s in shapes:
            if s == SCALAR or s == out:
                continue
            if out == SCALAR:
                out = s
                continue
            merged = []
            for a, b in zip(out, s):
                if a != b and 1 not in (a, b):
                    self.fail(f"shapes {show_shape(out)} and {show_shape(s)} do not broadcast", e)
                merged.append(b if a == 1 else a)
            out = tuple(merged)
        return out

    def square(self, e, s: tuple) -> tuple:
        if len(s) != 2 or s[0] != s[1]:
            self.fail(f"{type(e).__name__} needs a square matrix, got {show_shape(s)}", e)
        return s

    def shape(self, e) -> tuple:
        if e.is_Symbol:
            decl = self.decls.get(e.name)
            if isinstance(e, (StateSymbol, InputSymbol)) and decl is not None and decl.shape:
                return tuple(decl.shape)
            return PARAM if isinstance(e, TensorSymbol) else SCALAR
        if isinstance(e, Reduction):
            scope = getattr(e, "scope", "tensor")
            if scope not in ("tensor", "group", "optimizer"):
                self.fail(f"a per-{scope} reduction inside a matrix operation (use a "
                          "tensor-wide one, or fnorm/trace)", e)
            return SCALAR
        if not isinstance(e, MatrixOp):
            # numbers, sums, products, functions, where() branches and conditions
            return self.broadcast(e, [self.shape(a) for a in e.args])
        return self.matrix(e)

    def matrix(self, e) -> tuple:
        args = [self.shape(a) for a in e.args[:e.n_matrix_args]]
        if isinstance(e, Every):
            value, other = self.shape(e.args[2]), self.shape(e.args[3])
            if value != other and value != SCALAR:
                self.fail(f"every(): the value is {show_shape(value)} but otherwise is "
                          f"{show_shape(other)}", e)
            return other
        if any(len(a) != 2 for a in args):
            self.fail(f"{e.fn}() needs matrices, got {', '.join(map(show_shape, args))}", e)
        if isinstance(e, MatMul):
            (a, b), (c, d) = args
            if b != c:
                self.fail(f"matmul of {show_shape(args[0])} and {show_shape(args[1])}: inner "
                          "dimensions differ", e)
            return (a, d)
        if isinstance(e, Transpose):
            return args[0][::-1]
        if isinstance(e, (InvRoot, Inverse, Eigenvectors, AddDiagonal)):
            return self.square(e, args[0])
        if isinstance(e, Solve):
            self.square(e, args[0])
            if args[1][0] != args[0][0]:
                self.fail(f"solve: {show_shape(args[0])} and {show_shape(args[1])} differ in "
                          "rows", e)
            return args[1]
        if isinstance(e, PowerIteration):
            self.square(e, args[0])
            if args[1] != args[0]:
                self.fail(f"power_iteration: the basis is {show_shape(args[1])}, the matrix "
                          f"{show_shape(args[0])}", e)
            return args[0]
        if isinstance(e, ShermanMorrison):
            n = self.square(e, args[0])[0]
            for v in args[1:]:
                if v != (n, 1):
                    self.fail(f"sherman_morrison needs ({n}, 1) columns, got {show_shape(v)}", e)
            return args[0]
        if isinstance(e, Diagonal):
            return (self.square(e, args[0])[0], 1)
        if isinstance(e, (Trace, FNorm, BatchSize)):
            if isinstance(e, Trace):
                self.square(e, args[0])
            return SCALAR
        if isinstance(e, BatchMean):
            return (args[0][1], 1)
        if isinstance(e, Orthogonalize):
            if args[0] != PARAM:
                self.fail(f"orthogonalize needs a parameter-shaped matrix, got "
                          f"{show_shape(args[0])}", e)
            return PARAM
        self.fail(f"no shape rule for {type(e).__name__}", e)
