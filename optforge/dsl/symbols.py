"""The leaves of a rule: the parameter, its gradient, the step count, states and hyperparameters.

Each kind of leaf is its own SymPy ``Symbol`` subclass, so the compiler can tell
per-element tensors (param, grad, states) from run-time scalars (hyperparameters,
the step) by type alone. States are declared with ``state(...)`` while a rule
function runs; the declaration (initial value, storage dtype) is recorded in the
active build context, which ``RuleSpec`` opens.
"""
from __future__ import annotations

import contextlib
import threading
import re
import keyword
from dataclasses import dataclass
from typing import Iterator

import sympy as sp

from .errors import DSLError

# Storage dtypes a state may declare. None means "the parameter's dtype".
STATE_DTYPES = ("float32", "float64", "bfloat16", "float16")
RESERVED_NAMES = frozenset({"p", "g", "t", "step", "params", "param", "grad", "initial_lr"})
# The compiler names its temporaries s0, h0, e0, m0, q0, r0, mat0 (tensors v_<name>): a
# user name of that shape would silently alias one in generated code.
_TEMP_NAME = re.compile(r"^([sehmqr]\d+|mat\d+|v_.*)$")


def is_reserved(name: str) -> bool:
    """True for names a hyperparameter, state or random scalar must not take."""
    return name in RESERVED_NAMES or bool(_TEMP_NAME.match(name))


class TensorSymbol(sp.Symbol):
    """A value held per element of the parameter: read from memory in the kernel."""


class ParamSymbol(TensorSymbol):
    """The parameter being optimized."""


class GradSymbol(TensorSymbol):
    """The gradient of the loss with respect to the parameter."""


class StateSymbol(TensorSymbol):
    """Optimizer state with one value per parameter element (e.g. ``exp_avg``)."""


class InputSymbol(TensorSymbol):
    """A tensor the runtime supplies at each step, shaped like the parameter (a Hessian
    diagonal estimate, a second gradient) or, for matrix rules, like a layer's batch of
    activations. Read-only: a rule never writes it."""


class ScalarSymbol(sp.Symbol):
    """A run-time scalar: the same value for every element of a tensor."""


class StepSymbol(ScalarSymbol):
    """The step count, incremented before the update (1 on the first step), as torch does."""


class HyperSymbol(ScalarSymbol):
    """A hyperparameter: a ``param_groups`` key (or one element of a tuple-valued key)."""


class InitialLrSymbol(HyperSymbol):
    """The group's initial learning rate: ``group["initial_lr"]``, which torch's lr
    schedulers set to the lr they started from, else the group's current ``lr``."""


def initial_lr() -> InitialLrSymbol:
    """The learning rate the group started with (see InitialLrSymbol): ``lr /
    initial_lr()`` is how far a scheduler has moved it (AdaBound's bounds follow it)."""
    return InitialLrSymbol("initial_lr", positive=True)


def param() -> ParamSymbol:
    """The parameter tensor ``p`` (its value before this step)."""
    return ParamSymbol("p", real=True)


def grad() -> GradSymbol:
    """The gradient ``g`` of the loss with respect to the parameter."""
    return GradSymbol("g", real=True)


def step() -> StepSymbol:
    """The step count ``t`` (1 on the first update)."""
    return StepSymbol("t", positive=True)


@dataclass(frozen=True)
class StateDecl:
    """How a tensor beside the parameter is created (or obtained) and stored.

    ``kind`` is "state" (per element, in ``optimizer.state``), "matrix" (a matrix-shaped
    state such as a Kronecker factor: ``shape`` names its dimensions after the parameter's
    2-D view, "rows" = shape[0], "cols" = numel / shape[0]), "input" (supplied by the
    runtime each step, never stored) or "buffer" (a matrix stage's float32 result).
    """

    name: str
    init: sp.Expr
    dtype: str | None
    kind: str = "state"
    shape: tuple = ()
    eye: bool = False  # a matrix state that starts as ``init`` times the identity
    # never negative (a second moment): 8-bit storage uses the unsigned map
    # (compiler/quant_format.py), which spends the sign bit on precision
    nonnegative: bool = False
    # kind "scoped": one value per "tensor", "row", "col", "group" or "optimizer"
    # (dsl/scoped.py); every other kind is per element or matrix-shaped
    scope: str = "element"

    @property
    def stored(self) -> bool:
        """Kept in ``optimizer.state`` (and checkpoints)."""
        return self.kind in ("state", "matrix", "scoped")


class _BuildContext:
    """Collects the states (and random scalars) declared while one rule function runs."""

    def __init__(self, rule_name: str):
        self.rule_name = rule_name
        self.states: dict[str, StateDecl] = {}  # states, matrix states and inputs
        self.randoms: dict[str, str] = {}  # random scalar name -> distribution
        self.intervals: set[str] = set()  # hyperparameters used as every(k, ...)'s k


# The rules being built, innermost last, one stack per thread: two threads building rules
# at once (two optimizers constructed in a thread pool) must not declare into each other.
_local = threading.local()


def _stack() -> list[_BuildContext]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def active_context() -> _BuildContext | None:
    """The build context of the rule this thread is building, if any."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def build_context(rule_name: str) -> Iterator[_BuildContext]:
    ctx = _BuildContext(rule_name)
    _stack().append(ctx)
    try:
        yield ctx
    finally:
        _stack().pop()


def _current_rule_name() -> str:
    ctx = active_context()
    return ctx.rule_name if ctx is not None else "<rule>"


def state(name: str, init=0, dtype: str | None = None, scope: str = "element",
          nonnegative: bool = False):
    """Declare a state and return its current value.

    ``init`` is a number, a hyperparameter, or an expression of the parameter and the
    first gradient (``init=param()`` copies the parameter; ``init=grad()`` makes the
    state the gradient of the step that creates it). ``dtype`` is the storage dtype, one of
    ``STATE_DTYPES``; by default the parameter's dtype. ``scope`` is "element" (one value
    per element) or one of dsl/scoped.py's scopes ("tensor", "row", "col", "group",
    "optimizer"), whose ``init`` is a number or a hyperparameter. ``nonnegative``: the
    author's promise that the state never goes below zero (a sum or average of squares),
    which lets 8-bit storage use the unsigned map; a negative value stored there becomes 0.
    """
    rule = _current_rule_name()
    if scope != "element":
        from .scoped import declare_scoped  # (scoped.py imports this module)
        return declare_scoped(rule, name, init, dtype, scope)
    check_name(name, "state")
    if dtype is not None and dtype not in STATE_DTYPES:
        raise DSLError(f"rule {rule!r}: state {name!r} has dtype {dtype!r}; "
                       f"supported storage dtypes are {STATE_DTYPES} or None (the parameter's)")
    init_expr = _init_expr(rule, name, init)
    if any(getattr(node, "is_reduction", False) for node in sp.preorder_traversal(init_expr)):
        raise DSLError(f"rule {rule!r}: state {name!r} init {init_expr} uses a reduction; an "
                       "initial value is computed per element when the state is created")
    bad = sorted((s for s in init_expr.free_symbols
                  if not isinstance(s, (HyperSymbol, ParamSymbol, GradSymbol))), key=str)
    if bad:
        raise DSLError(f"rule {rule!r}: state {name!r} init {init_expr} uses {bad[0]}; "
                       "an initial value may use only numbers, hyperparameters, param() "
                       "and grad()")
    declare(StateDecl(name, init_expr, dtype, nonnegative=bool(nonnegative)))
    return StateSymbol(name, real=True)


def _init_expr(rule: str, name: str, init) -> sp.Expr:
    """A state's initial value as an expression: a finite number, or an expression of
    hyperparameters and param(); anything else (a string, a list, a bool, NaN or an
    infinity, which would poison every step) is refused, naming it."""
    problem = None
    if isinstance(init, (str, bytes, bool, list, tuple, dict, set)) or init is None:
        problem = f"a {type(init).__name__}, not a number or an expression"
    else:
        try:
            expr = sp.sympify(init, strict=True)
        except (sp.SympifyError, TypeError):
            expr, problem = None, f"a {type(init).__name__}, not a number or an expression"
        if expr is not None and not isinstance(expr, sp.Expr):
            problem = f"a {type(expr).__name__}, not a number or an expression"
        elif expr is not None and expr.has(sp.nan, sp.oo, -sp.oo, sp.zoo):
            problem = "not finite"
    if problem is not None:
        raise DSLError(f"rule {rule!r}: state {name!r} has initial value {init!r}, which is "
                       f"{problem} (use a finite number, a hyperparameter or an expression "
                       "of param() and grad())")
    return expr


def check_name(name, what: str) -> None:
    """A state or input name must be a free Python identifier."""
    rule = _current_rule_name()
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise DSLError(f"rule {rule!r}: {what} name {name!r} is not a Python identifier")
    if is_reserved(name):
        raise DSLError(f"rule {rule!r}: {what} name {name!r} is reserved "
                       f"(reserved: {sorted(RESERVED_NAMES)})")


def declare(decl: StateDecl) -> None:
    """Record a declaration in the active rule (the same name twice must agree)."""
    ctx = active_context()
    if ctx is None:
        return
    known = ctx.states.get(decl.name)
    if known is not None and known != decl:
        raise DSLError(f"rule {_current_rule_name()!r}: {decl.name!r} declared twice "
                       f"differently: {known} vs {decl}")
    ctx.states[decl.name] = decl


def is_tensor_expr(expr: sp.Basic) -> bool:
    """True when the expression varies per element (it reads a tensor)."""
    return any(isinstance(s, TensorSymbol) for s in expr.free_symbols)


def reads_initial_lr(rule) -> bool:
    """Whether a built rule uses initial_lr() (in its math or a state's initial value)."""
    exprs = [*rule.outputs().values(), *(d.init for d in rule.states.values())]
    return any(isinstance(s, InitialLrSymbol) for e in exprs for s in e.free_symbols)
