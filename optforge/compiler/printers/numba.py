"""Prints a plan's elementwise stage as one ``@njit(parallel=True)`` prange kernel.

Whitelist printer: every supported SymPy node has a method here, anything else
raises CompileError naming it (inheriting SymPy's Python printer would silently
emit float64 literals, integer division or ``max`` without NaN propagation).

Types are the point of this printer. Numba types a Python float literal as float64
and float32 * float64 is float64, so one bare ``0.5`` would turn a whole kernel into
float64 math. Every literal is therefore wrapped in the compute type
(``np.float32(0.5)``), scalars are cast once on entry, and only NumPy functions that
keep float32 are used (``np.sqrt``, ``np.exp``, ...; ``math.*`` returns float64).
A float64 parameter computes in float64, as torch.optim does.
"""
from __future__ import annotations

import re

import sympy as sp
from sympy.core.relational import Relational

from ...dsl.symbols import TensorSymbol
from ..errors import CompileError
from ..plan import ElemTemp, KernelPlan, ReduceResult, ScalarTemp, ScopeTemp
from ..templates import render
from .torch import local
from . import rounding_spellings as spell
from .infix import InfixArithmetic

_UNARY = {sp.Abs: "np.abs", sp.sign: "np.sign", sp.exp: "np.exp", sp.log: "np.log"}
_REL = {"<", "<=", ">", ">=", "==", "!="}
_NP = {"float32": "np.float32", "float64": "np.float64"}

# storage dtype -> (pointer helper, item size, load (bits -> float32), store (float32 -> bits))
STORAGE = {
    "float32": ("ptr_f32", 4, None, None),
    "float64": ("ptr_f64", 8, None, None),
    "bfloat16": ("ptr_u16", 2, "bf16_to_f32", "f32_to_bf16"),
    "float16": ("ptr_u16", 2, "f16_to_f32", "f32_to_f16"),
}


def compute_dtype(param_dtype: str) -> str:
    """Math runs in float32; float64 parameters keep float64 (as torch.optim does)."""
    return "float64" if param_dtype == "float64" else "float32"


class NumbaPrinter(InfixArithmetic):
    """Scalar Numba code for one element; ``ftype`` is the compute type (float32/64)."""

    def __init__(self, rule_name: str, ftype: str):
        self.rule_name, self.f = rule_name, _NP[ftype]

    def doprint(self, e) -> str:
        method = getattr(self, "_print_" + type(e).__name__, None)
        if method is not None:
            return method(e)
        for cls, fn in _UNARY.items():
            if isinstance(e, cls):
                return f"{fn}({self.doprint(e.args[0])})"
        if isinstance(e, Relational) and e.rel_op in _REL:
            return f"({self.doprint(e.lhs)} {e.rel_op} {self.doprint(e.rhs)})"
        if isinstance(e, (TensorSymbol, ElemTemp, ScalarTemp, ReduceResult, ScopeTemp)):
            return local(e)
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            return self.literal(e)
        raise CompileError(f"rule {self.rule_name!r}: the numba printer does not support "
                           f"{type(e).__name__} in {sp.sstr(e)}")

    def literal(self, e) -> str:
        value = float(e)
        if value != value or value in (float("inf"), float("-inf")):
            raise CompileError(f"rule {self.rule_name!r}: non-finite constant {sp.sstr(e)} "
                               "in the elementwise stage")
        return f"{self.f}({value!r})"

    def _print_Mul(self, e):
        num, den = self.split_product(e)
        text = " * ".join(num) or self.literal(1)
        return f"({text} / {' / '.join(den)})" if den else f"({text})"

    def _print_Pow(self, e):
        base, exp = self.doprint(e.base), e.exp
        if exp == sp.Rational(1, 2):
            return f"np.sqrt({base})"
        if exp == sp.Rational(-1, 2):
            return f"({self.literal(1)} / np.sqrt({base}))"
        if exp == -1:
            return f"({self.literal(1)} / {base})"
        # A general power: both operands in the compute type keep the result there.
        return f"np.power({base}, {self.doprint(exp)})"

    def _nest(self, e, fn):
        out = self.doprint(e.args[0])
        for a in e.args[1:]:
            out = f"{fn}({out}, {self.doprint(a)})"
        return out

    def _print_ParamRound(self, e):  # compiler/storage.py (Kahan-compensated updates)
        return spell.numba_param_round(self.doprint(e.args[0]), getattr(self, "param_dtype", None))

    def _print_Max(self, e):
        return self._nest(e, "fmax")  # NaN-propagating, as torch.maximum

    def _print_Min(self, e):
        return self._nest(e, "fmin")

    def _print_Piecewise(self, e):
        (value, cond), rest = e.args[0], e.args[1:]
        if cond == sp.true or not rest:
            return self.doprint(value)
        other = self.doprint(sp.Piecewise(*rest)) if len(rest) > 1 or rest[0][1] != sp.true \
            else self.doprint(rest[0][0])
        return f"({self.doprint(value)} if {self.doprint(cond)} else {other})"

    def _logic(self, e, op):
        return "(" + f" {op} ".join(self.doprint(a) for a in e.args) + ")"

    def _print_And(self, e):
        return self._logic(e, "and")

    def _print_Or(self, e):
        return self._logic(e, "or")

    def _print_Not(self, e):
        return f"(not {self.doprint(e.args[0])})"


def kernel_slots(plan: KernelPlan) -> list[str]:
    """The tensors the kernels touch, in address-table order: p, g, then states."""
    touched = {r.name for r in plan.loads} | {r.name for r, _ in plan.stores} | {
        r.name for stage in plan.reduce_stages for r in stage.loads}
    return [n for n in ["p", "g", *plan.states] if n in touched]


def storage_dtypes(plan: KernelPlan, param_dtype: str) -> dict[str, str]:
    """Each slot's storage dtype: a state's declared dtype, else the parameter's."""
    refs = {r.name: r for stage in plan.reduce_stages for r in stage.loads}
    refs |= {r.name: r for r in plan.loads} | {r.name: r for r, _ in plan.stores}
    out = {}
    for name in kernel_slots(plan):
        dtype = refs[name].dtype or param_dtype
        if dtype not in STORAGE:
            raise CompileError(f"rule {plan.rule_name!r}: tensor {name!r} has storage dtype "
                               f"{dtype!r}; the numba backend supports {sorted(STORAGE)}")
        out[name] = dtype
    return out


def kernel_name(plan: KernelPlan, param_dtype: str) -> str:
    """Unique per variant: Numba's on-disk cache is keyed by the function's name."""
    stem = re.sub(r"\W", "_", plan.rule_name, flags=re.ASCII).lower() or "rule"
    return f"{stem}_{plan.fingerprint()}_{param_dtype}"


def _load(name: str, dtype: str, ftype: str) -> str:
    _, _, bits_to_f32, _ = STORAGE[dtype]
    value = f"{bits_to_f32}(a_{name}[i])" if bits_to_f32 else f"a_{name}[i]"
    if (dtype if bits_to_f32 is None else "float32") != ftype:
        value = f"{_NP[ftype]}({value})"
    return value


def _store(dtype: str, ftype: str, value: str, noise: str | None = None) -> str:
    """``value`` as stored into ``dtype``; ``noise``: 16 random bits for a stochastic
    bfloat16 store (compiler/rounding.py)."""
    _, _, _, f32_to_bits = STORAGE[dtype]
    if f32_to_bits is None:
        return value if dtype == ftype else f"{_NP[dtype]}({value})"
    if ftype == "float64":  # via float32, as torch's float64 -> 16-bit casts do
        value = f"np.float32({value})"
    if noise is not None:  # (callers pass noise for 16-bit stores only)
        return f"{f32_to_bits}_sr({value}, {noise})"
    return f"{f32_to_bits}({value})"


def numba_source(plan: KernelPlan, param_dtype: str = "float32") -> str:
    """A module defining ``kernel(addresses, blocks, scalars)`` for one plan and dtype
    (multi-stage plans: see ``numba_reduce.py``)."""
    if param_dtype not in STORAGE:
        raise CompileError(f"rule {plan.rule_name!r}: parameters of dtype {param_dtype!r} are "
                           f"not supported by the numba backend ({sorted(STORAGE)})")
    if plan.reduce_stages:
        from .numba_reduce import stages_source
        return stages_source(plan, param_dtype)
    ftype = compute_dtype(param_dtype)
    pr = NumbaPrinter(plan.rule_name, ftype)
    pr.param_dtype = param_dtype
    dtypes = storage_dtypes(plan, param_dtype)
    sr = spell.rounded_stochastically(plan, dtypes)
    slots = list(dtypes)
    scalars = [f"    {s.name} = {_NP[ftype]}(scalars[{k}])" for k, s in enumerate(plan.scalar_args)]
    views = []
    for k, name in enumerate(slots):
        ptr, size, _, _ = STORAGE[dtypes[name]]
        views.append(f"        a_{name} = carray({ptr}(addresses[{k}, j] + {size} * lo), n)")
    loads = [f"            v_{r.name} = {_load(r.name, dtypes[r.name], ftype)}"
             for r in plan.loads]
    temps = [f"            {s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    views += spell.numba_rng_init(plan, sr, "        ")
    stores = [f"            a_{r.name}[i] = {_store(dtypes[r.name], ftype, pr.doprint(e), spell.numba_noise(r.name, 'i') if r.name in sr else None)}"
              for r, e in plan.stores]
    return render("numba_step.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  param_dtype=param_dtype, compute_dtype=ftype,
                  storage=", ".join(f"{n}={d}" for n, d in dtypes.items()),
                  slots="".join(f"{n!r}, " for n in slots),
                  storage_tuple="".join(f"{dtypes[n]!r}, " for n in slots),
                  n_scalars=str(len(plan.scalar_args)), kernel=kernel_name(plan, param_dtype),
                  scalars="\n".join(scalars) or "    pass",
                  views="\n".join(views),
                  body="\n".join(loads + temps + stores) or "            pass")
