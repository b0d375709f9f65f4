"""Communication inside a rule: reduce a per-element value across data-parallel workers.

``allreduce(x, op="sum" | "mean", bits=32 | 1)`` and ``majority_vote(x)`` are values of
the step like any other; the compiler splits the rule at them (compiler/passes/
split_collectives.py): an elementwise pre-stage computes ``x`` into a buffer, the
runtime sends it over the optimizer's process group (runtime/collective_stage.py), and
the rest of the rule reads the result as a tensor shaped like the parameter.

* ``bits=32``: an fp32 all-reduce of ``x`` (``"mean"``: the sum over the N workers
  divided by N).
* ``bits=1``: ``x`` must be a sign (``sign(c)`` or ``-sign(c)``); each worker sends one
  bit per element, packed 8 to a byte (``c >= 0``: a bit has no zero, so an exact 0
  travels as +1, and NaN/Inf are refused on every rank alike). ``"sum"`` is the sum of
  the N +-1 votes, ``"mean"`` that sum over N.
* ``majority_vote(x)``: ``x`` a sign; the sign of the sum of the +-1 votes, 0 on a tie
  (possible for an even N), as in signSGD with majority vote (Bernstein et al. 2018) and
  Distributed Lion (Liu et al. 2024).

On a single process (no process group) a collective is the identity: one worker's sum,
mean or vote of its own (bit-encoded) values. ``name`` names the result: a user may
supply it instead, ``step(inputs={name: {param: tensor}})``, and nothing is sent (a
simulation of N workers in one process, or a transport of one's own).
"""
from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str

from .errors import DSLError
from .matrix import MatrixOp
from .reductions import Reduction
from .symbols import _current_rule_name, check_name, is_tensor_expr

OPS = ("sum", "mean")
BITS = (32, 1)
VOTE = "vote"  # majority_vote's op (sign of the sum)


class Collective(sp.Function):
    """``(x, op, bits, name)``: ``op`` "sum", "mean" or "vote"; ``bits`` 32 or 1."""

    nargs = 4
    is_real = True
    is_commutative = True

    @property
    def value(self) -> sp.Expr:
        return self.args[0]

    @property
    def op(self) -> str:
        return str(self.args[1])

    @property
    def bits(self) -> int:
        return int(self.args[2])

    @property
    def result_name(self) -> str:
        return str(self.args[3])

    def _sympystr(self, printer):
        x = printer._print(self.value)
        if self.op == VOTE:
            return f"majority_vote({x})"
        return f'allreduce({x}, op="{self.op}", bits={self.bits})'

    def _latex(self, printer, exp=None):
        x = printer._print(self.value)
        what = {VOTE: r"\operatorname{vote}", "sum": r"\sum_{\text{workers}}",
                "mean": r"\operatorname{mean}_{\text{workers}}"}[self.op]
        text = rf"{what}\left({x}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def is_sign(x: sp.Expr) -> bool:
    """``sign(c)`` or ``-sign(c)``: values a single bit can carry (with 0 sent as +1)."""
    if isinstance(x, sp.sign):
        return True
    return isinstance(x, sp.Mul) and len(x.args) == 2 and sp.Integer(-1) in x.args \
        and any(isinstance(a, sp.sign) for a in x.args)


def _checked(x, what: str, bits: int) -> sp.Expr:
    rule = _current_rule_name()
    x = sp.sympify(x)
    if not isinstance(x, sp.Expr) or not is_tensor_expr(x):
        raise DSLError(f"rule {rule!r}: {what} reduces a per-element value across workers; "
                       f"{sp.sstr(x)} is not one (a scalar is the same on every worker)")
    for node in sp.preorder_traversal(x):
        if isinstance(node, (Reduction, MatrixOp, Collective)):
            raise DSLError(f"rule {rule!r}: {what}'s argument must be elementwise (param, "
                           f"grad, states, inputs, scalars); it holds {sp.sstr(node)}: "
                           f"{sp.sstr(x)}")
    if bits == 1 and not is_sign(x):
        raise DSLError(f"rule {rule!r}: {what} sends 1 bit per element, so its argument "
                       f"must be a sign (sign(...) or -sign(...)), got {sp.sstr(x)}")
    return x


def allreduce(x, op: str = "sum", bits: int = 32, name: str | None = None) -> Collective:
    """The sum (``op="sum"``) or mean (``"mean"``) of ``x`` over the workers of the
    optimizer's process group; ``bits=1`` sends 1 bit per element (``x`` a sign)."""
    rule = _current_rule_name()
    if op not in OPS:
        raise DSLError(f"rule {rule!r}: allreduce op={op!r}; expected one of {OPS}")
    if isinstance(bits, bool) or bits not in BITS:
        raise DSLError(f"rule {rule!r}: allreduce bits={bits!r}; expected 32 or 1")
    name = f"allreduce_{op}" if name is None else name
    check_name(name, "collective result")
    x = _checked(x, f'allreduce(..., op="{op}", bits={bits})', bits)
    return Collective(x, Str(op), sp.Integer(bits), Str(name))


def majority_vote(x, name: str = VOTE) -> Collective:
    """sign(sum over workers of ``x``), ``x`` a sign sent as 1 bit per element; 0 on a
    tie."""
    check_name(name, "collective result")
    x = _checked(x, "majority_vote(...)", 1)
    return Collective(x, Str(VOTE), sp.Integer(1), Str(name))
