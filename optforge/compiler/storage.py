"""Storage options: how a rule's states (and its parameter) are kept in memory.

A rule's author may declare a state's storage dtype (``state("m", dtype="bfloat16")``);
a user may override it for any rule (``optforge.AdamW(params, state_dtype="bfloat16")``,
per state with ``state_dtypes={...}``), and choose how 16-bit stores round: to nearest
even or stochastically (``rounding``), and for the parameter also Kahan-compensated
(``param_rounding="kahan"``, as optimi does: a compensation state keeps what the bf16
parameter could not take, and adds it to the next update).

Everything here is a transformation of the Rule before lowering (new dtypes, the Kahan
state and expressions) or of the plan after it (which stores round stochastically, see
``compiler/rounding.py``), so every backend, the state allocation, checkpoints and the
traffic model see the options without knowing about them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import sympy as sp

from ..dsl.rule import Rule
from ..dsl.symbols import STATE_DTYPES, StateDecl, StateSymbol
from .kinds import Rounding
from .quant_format import BLOCKS, DEFAULT_BLOCK, QuantFormat

ROUNDINGS = tuple(r.value for r in Rounding)  # "nearest", "stochastic"
PARAM_ROUNDINGS = (*ROUNDINGS, "kahan")
KAHAN_STATE = "kahan_comp"  # the compensation state of param_rounding="kahan"
QUANTIZED = "int8"  # the user's name for 8-bit block-wise storage (compiler/quant_format.py)
USER_DTYPES = (*STATE_DTYPES, QUANTIZED)


class ParamRound(sp.Function):
    """``x`` rounded to the parameter's storage dtype and read back (identity for float32
    and float64 parameters): the value a store of ``x`` into ``p`` would keep."""

    nargs = 1
    is_real = True


@dataclass(frozen=True)
class StorageOptions:
    """Resolved options of one param group (hashable: part of the compile key).

    ``state_dtypes`` holds only the per-element states whose dtype differs from the
    rule author's declaration, sorted by name; an 8-bit state's dtype names its format
    (``"q8u256"``: the unsigned map for a state its author declares ``nonnegative``,
    else the signed one; blocks of ``quant_block``).
    """

    state_dtypes: tuple[tuple[str, str], ...] = ()
    rounding: str = "nearest"
    param_rounding: str = "nearest"

    def float32_states(self) -> "StorageOptions":
        """These options with every 8-bit state kept in float32 instead (the options of a
        tensor too small to quantize)."""
        return replace(self, state_dtypes=tuple(
            (n, "float32" if d.startswith("q8") else d) for n, d in self.state_dtypes))

    @property
    def is_default(self) -> bool:
        return self == DEFAULT


DEFAULT = StorageOptions()  # the rule author's dtypes, rounding to nearest


def per_element_states(rule: Rule) -> dict[str, StateDecl]:
    """The states a user's storage options may change: stored, parameter-shaped."""
    return {n: d for n, d in rule.states.items() if d.kind == "state"}


def resolve(rule: Rule, state_dtype: str | None = None, state_dtypes: dict | None = None,
            rounding: str = "nearest", param_rounding: str = "nearest",
            quant_block: int = DEFAULT_BLOCK) -> StorageOptions:
    """The options for ``rule``: ``state_dtype`` for every per-element state, then
    ``state_dtypes`` per state (the user's choice wins over the author's). Raises
    ValueError naming an unknown state, dtype, rounding or 8-bit block size."""
    if type(quant_block) is not int or quant_block not in BLOCKS:
        raise ValueError(f"rule {rule.name!r}: quant_block={quant_block!r}; expected one of "
                         f"{BLOCKS}")
    states = per_element_states(rule)
    if state_dtype is not None:
        _check_dtype(rule, "state_dtype", state_dtype)
    for name, dtype in (state_dtypes or {}).items():
        if name not in states:
            raise ValueError(f"rule {rule.name!r}: state_dtypes names state {name!r}, which "
                             f"this rule does not keep per element; its states: "
                             f"{sorted(states) or 'none'}")
        _check_dtype(rule, f"state_dtypes[{name!r}]", dtype)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rule {rule.name!r}: rounding={rounding!r}; expected one of "
                         f"{ROUNDINGS}")
    if param_rounding not in PARAM_ROUNDINGS:
        raise ValueError(f"rule {rule.name!r}: param_rounding={param_rounding!r}; expected "
                         f"one of {PARAM_ROUNDINGS}")
    if param_rounding == "kahan" and KAHAN_STATE in rule.states:
        raise ValueError(f"rule {rule.name!r} already has a state named {KAHAN_STATE!r}; "
                         "param_rounding='kahan' needs that name for its compensation")
    chosen = {}
    for name, decl in states.items():
        dtype = (state_dtypes or {}).get(name, state_dtype if state_dtype else decl.dtype)
        if dtype == QUANTIZED:
            dtype = QuantFormat(not decl.nonnegative, quant_block).dtype
        if dtype != decl.dtype:
            chosen[name] = dtype
    return StorageOptions(tuple(sorted(chosen.items())), rounding, param_rounding)


def _check_dtype(rule: Rule, where: str, dtype) -> None:
    if dtype not in USER_DTYPES:
        raise ValueError(f"rule {rule.name!r}: {where}={dtype!r} is not a supported storage "
                         f"dtype; supported: {USER_DTYPES}")


def with_storage(rule: Rule, options: StorageOptions) -> Rule:
    """A copy of ``rule`` storing its states as ``options`` say, and with Kahan-compensated
    parameter updates when asked: p' = round(p_new + c), c' = (p_new + c) - p'."""
    if options.is_default:
        return rule
    out = copy.copy(rule)
    dtypes = dict(options.state_dtypes)
    out.states = {n: replace(d, dtype=dtypes[n]) if n in dtypes else d
                  for n, d in rule.states.items()}
    out.updates = dict(rule.updates)
    if options.param_rounding == "kahan":
        compensation = StateSymbol(KAHAN_STATE, real=True)
        target = rule.param + compensation
        out.param = ParamRound(target)
        out.updates[KAHAN_STATE] = target - out.param
        out.states[KAHAN_STATE] = StateDecl(KAHAN_STATE, sp.Integer(0), None)
    return out
