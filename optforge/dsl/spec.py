"""RuleSpec: a rule function plus what its signature says about its hyperparameters.

A rule is an ordinary function whose keyword defaults are its hyperparameters:

* numbers become run-time scalars (``HyperSymbol``): changing them never recompiles;
* tuples of numbers (torch's ``betas``) become one scalar per element;
* bools are *structural*: the function is called with the actual value, so
  ``if amsgrad:`` works, and each combination is a separate compiled variant;
* numbers named in ``@specialize_on_zero(...)`` are run-time scalars whose being
  zero or not is structural (torch's SGD keeps no momentum buffer when momentum=0).
"""
from __future__ import annotations

import inspect
import keyword
import math
import numbers
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from .errors import DSLError, misuse_hint
from .infinite import decide_infinite_comparisons
from .determinism import check_deterministic
from .rule import Rule
from .symbols import HyperSymbol, build_context, is_reserved, reads_initial_lr
from .validate import validate

_INF = math.inf

Variant = tuple


@dataclass(frozen=True)
class HyperSlot:
    """One scalar hyperparameter: ``group[key]`` or ``group[key][index]``."""

    key: str
    index: int | None
    symbol: HyperSymbol


def specialize_on_zero(*names: str):
    """Decorator: whether each named hyperparameter is 0 selects the rule's structure.

    The rule function sees a literal 0 for a zero value (so ``if momentum != 0:``
    can drop a state), and the run-time symbol otherwise.
    """
    def mark(fn):
        fn._optforge_zero_specialized = tuple(names)
        return fn
    return mark


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _infinity_sign(value) -> int:
    """+1 / -1 for an infinite value, 0 for a finite one (or None)."""
    if value is None:
        return 0
    number = float(value)
    return 0 if math.isfinite(number) else (1 if number > 0 else -1)


def _element_name(key: str, i: int) -> str:
    # betas -> beta_1, beta_2 (renders as \beta_{1} in LaTeX)
    stem = key[:-1] if key.endswith("s") and len(key) > 1 else key
    return f"{stem}_{i + 1}"


def _checked_rule_name(name) -> str:
    """A rule's name reaches messages, LaTeX and the comments and kernel names of
    generated code: one printable line (a newline would end a generated comment and
    turn the rest of the name into code)."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise DSLError(f"rule name {name!r} must be a non-empty string of printable "
                       "characters (no newlines or other control characters)")
    return name


def momentum_aliases(defaults: dict) -> dict[str, tuple[str, int]]:
    """torch's schedulers cycle momentum (OneCycleLR, CyclicLR with cycle_momentum)
    through ``group["betas"][0]`` when the *optimizer's* defaults have ``betas``, else
    through ``group["momentum"]``. In a param group whose own rule has ``betas`` but no
    ``momentum`` (an AdamW group in an SGD or Muon optimizer), ``momentum`` is therefore
    the first beta, as torch's Adam would see it through ``betas``."""
    betas = defaults.get("betas")
    if isinstance(betas, tuple) and "momentum" not in defaults:
        return {"momentum": ("betas", 0)}
    return {}


class RuleSpec:
    """A rule function with its hyperparameters classified, and its variants built on demand."""

    def __init__(self, fn: Callable, name: str | None = None):
        if isinstance(fn, RuleSpec):
            fn = fn.fn
        if not callable(fn):
            raise DSLError(f"a rule must be a function over DSL symbols, got {fn!r}")
        self.fn = fn
        self.name = _checked_rule_name(name or getattr(fn, "__name__", "rule"))
        self.defaults: dict[str, object] = {}
        self.static: list[str] = []
        self.slots: list[HyperSlot] = []
        self.zero_specialized = tuple(getattr(fn, "_optforge_zero_specialized", ()))
        self.optional: list[str] = []  # default None: "off" unless set (structural)
        self.unbounded: list[str] = []  # default +-inf: whether infinite is structural
        # group key -> (key, index) it stands for (see momentum_aliases)
        self.aliases: dict[str, tuple[str, int]] = {}
        self._symbols: dict[str, object] = {}
        self._variants: dict[Variant, Rule] = {}
        self._initial_lr_variants: set[Variant] = set()  # built variants reading initial_lr()
        self._read_signature()

    def _read_signature(self) -> None:
        for arg in inspect.signature(self.fn).parameters.values():
            key, default = arg.name, arg.default
            if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD) or default is arg.empty:
                raise DSLError(f"rule {self.name!r}: argument {key!r} has no default; every "
                               "argument of a rule function is a hyperparameter with a default")
            if not key.isidentifier() or keyword.iskeyword(key):  # a forged __signature__
                raise DSLError(f"rule {self.name!r}: hyperparameter name {key!r} is not a "
                               "Python identifier")
            if key == "params":
                raise DSLError(f"rule {self.name!r}: 'params' is reserved by torch param groups")
            if is_reserved(key):
                raise DSLError(f"rule {self.name!r}: hyperparameter name {key!r} is reserved "
                               "(p, g, t, step and compiler temporary names like s0, e1)")
            self._classify(key, default)
            self.defaults[key] = default
        self.aliases = momentum_aliases(self.defaults)
        names = [s.symbol.name for s in self.slots]
        if len(set(names)) != len(names):
            raise DSLError(f"rule {self.name!r}: hyperparameter names collide: {names}")
        for key in self.zero_specialized:
            if key not in self._symbols or isinstance(self._symbols[key], tuple):
                raise DSLError(f"rule {self.name!r}: specialize_on_zero({key!r}) names no "
                               "scalar numeric hyperparameter")

    def _classify(self, key: str, default) -> None:
        """A bool is structural; a number (or None, or an infinity) a run-time scalar; a
        tuple of numbers one scalar per element. None ("off") and an infinity are
        structural as well: the function sees None or sympy's oo for them, never a kernel
        argument (so ``if clip is not None:`` works and ``minimum(x, oo)`` is ``x``)."""
        if isinstance(default, bool):
            self.static.append(key)
        elif default is None or _is_number(default):
            if default is None:
                self.optional.append(key)
            elif math.isinf(default):
                self.unbounded.append(key)
            sym = HyperSymbol(key, real=True)
            self.slots.append(HyperSlot(key, None, sym))
            self._symbols[key] = sym
        elif isinstance(default, tuple) and default and all(map(_is_number, default)) \
                and all(map(math.isfinite, default)):
            syms = tuple(HyperSymbol(_element_name(key, i), real=True)
                         for i in range(len(default)))
            self.slots += [HyperSlot(key, i, s) for i, s in enumerate(syms)]
            self._symbols[key] = syms
        else:
            raise DSLError(f"rule {self.name!r}: hyperparameter {key!r} has default "
                           f"{default!r} ({type(default).__name__}); hyperparameters must be "
                           "scalars: numbers (an infinity, or None for 'off'), bools, or "
                           "tuples of finite numbers")

    @property
    def hyper_symbols(self) -> list[HyperSymbol]:
        return [s.symbol for s in self.slots]

    def variant_of(self, group: dict) -> Variant:
        """The structural key of a param group: its bools, which zero-specialized keys are
        0, which None-default keys are None and the sign of each infinite one."""
        # one loop, no generator per part: asked for every group on every step
        out = [bool(group[k]) for k in self.static]
        for k in self.zero_specialized:
            out.append(group[k] is not None and float(group[k]) == 0.0)
        for k in self.optional:
            out.append(group[k] is None)
        for k in self.unbounded:
            out.append(_infinity_sign(group[k]))
        return tuple(out)

    @property
    def default_variant(self) -> Variant:
        return self.variant_of(self.defaults)

    def build(self, variant: Variant | None = None) -> Rule:
        """The validated Rule for one variant (cached: a rule function runs once per variant)."""
        variant = self.default_variant if variant is None else variant
        if variant not in self._variants:
            self._variants[variant] = self._build(variant)
        return self._variants[variant]

    def _build(self, variant: Variant) -> Rule:
        kwargs = dict(self._symbols)
        parts, start = [], 0
        for keys in (self.static, self.zero_specialized, self.optional, self.unbounded):
            parts.append(variant[start:start + len(keys)])
            start += len(keys)
        flags, zeros, nones, signs = parts
        kwargs.update(zip(self.static, flags))
        for key, is_zero in zip(self.zero_specialized, zeros):
            if is_zero:
                kwargs[key] = sp.Integer(0)
        kwargs.update((key, None) for key, off in zip(self.optional, nones) if off)
        kwargs.update((key, sign * sp.oo) for key, sign in zip(self.unbounded, signs) if sign)
        rule = self._call(kwargs)
        # a second build must give the same rule: a random draw while building (Python's
        # random, numpy, torch) would otherwise be frozen into a constant of the kernel
        check_deterministic(rule, self._call(kwargs))
        validate(rule, set(self.hyper_symbols))
        if reads_initial_lr(rule):
            if not isinstance(self._symbols.get("lr"), HyperSymbol):
                raise DSLError(f"rule {self.name!r} reads initial_lr() but has no scalar "
                               "hyperparameter 'lr' (initial_lr is the lr a group started "
                               "from)")
            self._initial_lr_variants.add(variant)  # hyper_values supplies it to these
        return rule

    def _call(self, kwargs: dict) -> Rule:
        """Run the rule function once, collecting the states it declares."""
        with build_context(self.name) as ctx:
            try:
                rule = self.fn(**kwargs)
            except DSLError:
                raise
            except TypeError as exc:
                raise DSLError(f"rule {self.name!r} failed while building: {exc} "
                               f"({misuse_hint(exc)})") from exc
        if not isinstance(rule, Rule):
            raise DSLError(f"rule {self.name!r} returned {type(rule).__name__}, not Rule(...)")
        rule.param = decide_infinite_comparisons(rule.param)
        rule.updates = {k: decide_infinite_comparisons(v) for k, v in rule.updates.items()}
        rule.states = dict(ctx.states)
        rule.randoms = dict(ctx.randoms)
        rule.intervals = set(ctx.intervals)
        return rule

    def interval_keys(self, group: dict) -> list[str]:
        """The hyperparameters (group keys) the group's rule uses as ``every(k, ...)``'s
        interval k in elementwise math: they must be whole numbers >= 1."""
        names = self.build(self.variant_of(group)).intervals
        return [s.key for s in self.slots if s.symbol.name in names and s.index is None]

    def hyper_values(self, group: dict) -> dict[str, float]:
        """Symbol name -> float value for one param group (run-time kernel scalars)."""
        out = {}
        for s in self.slots:
            v = group[s.key] if s.index is None else group[s.key][s.index]
            # None and infinities are structural (the variant's rule has no symbol for
            # them): the prologue gets a finite stand-in it never reads (NaN stays NaN:
            # the prologue's checks name it). Compared inline, not math.isinf: this runs
            # for every hyperparameter of every group on every step.
            v = 0.0 if v is None else float(v)
            out[s.symbol.name] = v if -_INF < v < _INF or v != v else 0.0
        if self._initial_lr_variants and self.variant_of(group) in self._initial_lr_variants:
            # torch's schedulers set it to the lr they started from (LRScheduler.__init__)
            out["initial_lr"] = float(group.get("initial_lr", group["lr"]))
        for alias, (key, index) in self.aliases.items():
            if alias in group:  # written by a scheduler: it is the current value
                out[self._symbols[key][index].name] = float(group[alias])
        return out

    def __repr__(self) -> str:
        return f"RuleSpec({self.name}, hyper={list(self.defaults)})"
