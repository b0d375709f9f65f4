"""The one expression printer every backend specializes: structure here, spellings there.

A whitelist printer: ``doprint`` turns the SymPy nodes a plan may hold into text by
their structure (sums, products, powers, where(), min/max, logic, comparisons, calls,
loads and stores) and asks the backend's subclass only how to *spell* each piece, through
tables (``UNARY``, ``SQRT``...) and small hooks (``literal``, ``select``, ``load``...).
Any other node ends at one refusal point, ``refuse``: a CompileError naming the rule,
the backend, the node and the expression (inheriting SymPy's code printers instead
would silently emit float64 literals, integer division or a NaN-dropping ``max``).
"""
from __future__ import annotations

import math

import sympy as sp
from sympy.core.relational import Relational

from ...dsl.matrix import MatrixOp
from ...dsl.symbols import ScalarSymbol, TensorSymbol
from ..errors import CompileError
from ..plan import ElemTemp, Rounding

RELATIONS = ("<", "<=", ">", ">=", "==", "!=")


def local(sym: sp.Symbol) -> str:
    """The generated-code variable holding a symbol's value.

    A name the user chose (a state, a hyperparameter, a random scalar, the step) never
    appears bare in generated code, so none can shadow the code's own names (``scalars``,
    ``torch``, ``math``, ``float``, ``_load``...): tensor values are ``v_<name>``, their
    arguments ``t_<name>`` (``arg``), new values ``n_<name>``, user scalars ``u_<name>``.
    The compiler's temporaries (``s0``, ``e1``, ``r0``...) keep their names: a user name
    of that shape is refused (``dsl/symbols.is_reserved``), and none of them has a
    one-letter prefix and an underscore.
    """
    if isinstance(sym, TensorSymbol):
        return f"v_{sym.name}"
    if isinstance(sym, ScalarSymbol):
        return f"u_{sym.name}"
    return sym.name


class BasePrinter:
    """Prints one expression as backend code; subclasses fill in the spellings."""

    backend = ""  # named in every refusal
    UNARY: dict[type, str] = {}  # SymPy function -> the backend's function of one argument
    SQRT = POW = MAX = MIN = ""  # function names
    # symbols a kernel has a variable for (others, e.g. a hyperparameter, are refused)
    SYMBOLS: tuple[type, ...] = ()
    # symbols whose value differs per element (ElemTemps do unless ``scalar_temps``)
    PER_ELEMENT: tuple[type, ...] = (TensorSymbol,)
    FINITE_ONLY = True  # refuse inf/nan literals (no backend spelling that is safe)

    def __init__(self, rule_name: str, param_dtype: str | None = None):
        self.rule_name = rule_name
        # the parameter's storage dtype where the printer knows it (ParamRound spells it)
        self.param_dtype = param_dtype
        # temporaries whose value is a scalar (CSE can name a condition on the step or a
        # hyperparameter, ``e0 = (s0 != 0.0)``): not per-element values
        self.scalar_temps: set[sp.Symbol] = set()

    # ---- the one refusal point ----------------------------------------------------------
    def refuse(self, e, why: str = "") -> CompileError:
        return CompileError(f"rule {self.rule_name!r}: the {self.backend} printer does not "
                            f"support {type(e).__name__} in {sp.sstr(e)}{why}")

    # ---- dispatch by structure ----------------------------------------------------------
    def doprint(self, e) -> str:
        method = getattr(self, "_print_" + type(e).__name__, None)
        if method is not None:
            return method(e)
        for cls, fn in self.UNARY.items():
            if isinstance(e, cls):
                return f"{fn}({self.doprint(e.args[0])})"
        if isinstance(e, Relational) and e.rel_op in RELATIONS:
            return f"({self.doprint(e.lhs)} {e.rel_op} {self.doprint(e.rhs)})"
        if isinstance(e, MatrixOp):
            return self.matrix_op(e)
        if isinstance(e, self.SYMBOLS):
            return local(e)
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            value = float(e)
            if self.FINITE_ONLY and not math.isfinite(value):
                raise self.refuse(e, " (a non-finite constant)")
            return self.literal(value)
        raise self.refuse(e)

    def tensor(self, e) -> bool:
        """Whether ``e`` differs per element (else one value for the whole kernel)."""
        return any(isinstance(s, self.PER_ELEMENT)
                   or (isinstance(s, ElemTemp) and s not in self.scalar_temps)
                   for s in e.free_symbols)

    def note_scalar_temps(self, temps) -> None:
        """Note which of one generated function's temporaries hold scalars (afresh:
        another function may reuse a name for a per-element value)."""
        self.scalar_temps = set()
        for sym, e in temps:
            if not self.tensor(e):
                self.scalar_temps.add(sym)

    # ---- arithmetic -----------------------------------------------------------------------
    def _print_Add(self, e):
        """A negated term prints as ``a - b`` rather than ``a + -1*b``."""
        parts = [self.doprint(e.args[0])]
        for a in e.args[1:]:
            if a.is_Mul and a.args[0].is_Number and a.args[0] < 0:
                parts.append(f"- {self.doprint(-a)}")
            else:
                parts.append(f"+ {self.doprint(a)}")
        return "(" + " ".join(parts) + ")"

    def _print_Mul(self, e):
        num, den = [], []  # x**-1 factors are divisions, in argument order
        for a in e.args:
            if a.is_Pow and a.exp == -1:
                den.append(self.doprint(a.base))
            else:
                num.append(self.doprint(a))
        return self.product(num, den)

    def product(self, num: list[str], den: list[str]) -> str:
        text = " * ".join(num) or self.literal(1.0)
        return f"({text} / {' / '.join(den)})" if den else f"({text})"

    def divide(self, a: str, b: str) -> str:
        return f"({a} / {b})"

    def _print_Pow(self, e):
        base = self.doprint(e.base)
        if e.exp == sp.Rational(1, 2):
            return f"{self.SQRT}({base})"
        if e.exp == sp.Rational(-1, 2):
            return self.rsqrt(base)
        if e.exp == -1:
            return self.divide(self.literal(1.0), base)
        return self.power(e, base)

    def rsqrt(self, base: str) -> str:
        return self.divide(self.literal(1.0), f"{self.SQRT}({base})")

    def power(self, e: sp.Pow, base: str) -> str:
        """A general power: both operands in the compute type keep the result there."""
        return f"{self.POW}({base}, {self.doprint(e.exp)})"

    # ---- min / max ------------------------------------------------------------------------
    def _print_Max(self, e):
        return self.minmax(e, self.MAX, "min")

    def _print_Min(self, e):
        return self.minmax(e, self.MIN, "max")

    def minmax(self, e, fn: str, bound: str) -> str:
        """Pairwise from the left; ``bound`` is the clamp side a scalar operand would be."""
        out = self.doprint(e.args[0])
        for a in e.args[1:]:
            out = self.pairwise(fn, out, self.doprint(a))
        return out

    def pairwise(self, fn: str, a: str, b: str) -> str:
        return f"{fn}({a}, {b})"

    # ---- where() --------------------------------------------------------------------------
    def _print_Piecewise(self, e):
        (value, cond), rest = e.args[0], e.args[1:]
        if cond == sp.true or not rest:
            return self.doprint(value)
        other = self.doprint(sp.Piecewise(*rest)) if len(rest) > 1 or rest[0][1] != sp.true \
            else self.doprint(rest[0][0])
        return self.select(e, cond, self.doprint(value), other)

    def select(self, e: sp.Piecewise, cond, value: str, other: str) -> str:
        return f"({value} if {self.doprint(cond)} else {other})"

    # ---- logic ----------------------------------------------------------------------------
    def _print_And(self, e):
        return self.logic(e, "and")

    def _print_Or(self, e):
        return self.logic(e, "or")

    def _print_Not(self, e):
        return f"(not {self.doprint(e.args[0])})"

    def logic(self, e, op: str) -> str:
        return "(" + f" {op} ".join(self.doprint(a) for a in e.args) + ")"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"

    # ---- storage ----------------------------------------------------------------------------
    def _print_ParamRound(self, e):
        """``x`` as the parameter would keep it (compiler/storage.py: Kahan-compensated
        updates need what a store of the update into ``p`` loses)."""
        return self.param_round(self.doprint(e.args[0]))

    def param_round(self, value: str) -> str:
        """``value`` rounded to the parameter's storage dtype and read back."""
        return self.round_to(value, self.param_dtype)

    def _print_Cast(self, e):
        """``cast(x, dtype)`` (dsl/cast.py): the same rounding as a store into ``dtype``."""
        return self.round_to(self.doprint(e.args[0]), e.dtype, self.tensor(e.args[0]))

    def round_to(self, value: str, dtype: str, tensor: bool = True) -> str:
        """``value`` (compute type) rounded to ``dtype`` to nearest even and widened back
        to the compute type; ``tensor``: whether it differs per element."""
        raise NotImplementedError

    # ---- backend hooks --------------------------------------------------------------------
    def literal(self, value: float) -> str:
        """A finite float constant in the compute type."""
        raise NotImplementedError

    def matrix_op(self, e) -> str:
        """Whole-tensor matrix math: only the torch backend runs a matrix stage."""
        raise self.refuse(e)

    def load(self, name: str, dtype: str, masked: bool = False) -> str:
        """The statement reading tensor ``name`` (stored as ``dtype``) into ``v_<name>``."""
        raise NotImplementedError

    def store(self, name: str, dtype: str, value: str, masked: bool = False,
              rounding: Rounding = Rounding.NEAREST_EVEN) -> str:
        """The statement writing ``value`` (compute type) into tensor ``name``, rounded as
        ``abi.roundings`` says (a stochastic store reads the block's noise, ``noise_lines``
        of the backend's module)."""
        raise NotImplementedError
