"""Prints a plan's elementwise stage as one ``@njit(parallel=True)`` prange kernel: the
numba spellings of ``base.BasePrinter`` (which refuses any node it does not know).

Types are the point of this printer. Numba types a Python float literal as float64
and float32 * float64 is float64, so one bare ``0.5`` would turn a whole kernel into
float64 math. Every literal is therefore wrapped in the compute type
(``np.float32(0.5)``), scalars are cast once on entry, and only NumPy functions that
keep float32 are used (``np.sqrt``, ``np.exp``, ...; ``math.*`` returns float64).
A float64 parameter computes in float64, as torch.optim does.
"""
from __future__ import annotations

import sympy as sp

from ...dsl.symbols import TensorSymbol
from ..abi import kernel_name, roundings, storage_dtypes
from ..errors import CompileError
from ..packed_signs import SIGN_BITS, SIGN_VOTES, vote_ops
from ..plan import ElemTemp, KernelPlan, ReduceResult, Rounding, ScalarTemp, ScopeTemp
from ..rounding import SEED, STEP, salt
from ..templates import render
from . import sign_bits
from .base import BasePrinter
from .sign_bits import PACKED

__all__ = ["NumbaPrinter", "compute_dtype", "kernel_name", "noise_lines", "numba_source"]

_NP = {"float32": "np.float32", "float64": "np.float64"}

# storage dtype -> (pointer helper, item size, load (bits -> float32), store (float32 -> bits))
STORAGE = {
    "float32": ("ptr_f32", 4, None, None),
    "float64": ("ptr_f64", 8, None, None),
    "bfloat16": ("ptr_u16", 2, "bf16_to_f32", "f32_to_bf16"),
    "float16": ("ptr_u16", 2, "f16_to_f32", "f32_to_f16"),
    # packed sign bits: bytes, viewed, stored and loaded by sign_bits.py's spellings
    SIGN_BITS: ("ptr_u8", 1, None, None),
    SIGN_VOTES: ("ptr_u8", 1, None, None),
}


PARAM_DTYPES = sorted(set(STORAGE) - set(PACKED))  # (parameters are never packed bits)


def compute_dtype(param_dtype: str) -> str:
    """Math runs in float32; float64 parameters keep float64 (as torch.optim does)."""
    return "float64" if param_dtype == "float64" else "float32"


class NumbaPrinter(BasePrinter):
    """Scalar Numba code for one element; ``ftype`` is the compute type (float32/64)."""

    backend = "numba"
    UNARY = {sp.Abs: "np.abs", sp.sign: "np.sign", sp.exp: "np.exp", sp.log: "np.log"}
    SQRT, POW = "np.sqrt", "np.power"
    MAX, MIN = "fmax", "fmin"  # NaN-propagating, as torch.maximum
    SYMBOLS = (TensorSymbol, ElemTemp, ScalarTemp, ReduceResult, ScopeTemp)

    def __init__(self, rule_name: str, ftype: str, param_dtype: str | None = None):
        super().__init__(rule_name, param_dtype)
        self.ftype, self.f = ftype, _NP[ftype]
        # element ``i`` of a run is element ``element`` of the block (noise_lines)
        self.element = "i"

    def literal(self, value: float) -> str:
        return f"{self.f}({value!r})"

    def load(self, name: str, dtype: str, masked: bool = False) -> str:
        _, _, bits_to_f32, _ = STORAGE[dtype]
        value = f"{bits_to_f32}(a_{name}[i])" if bits_to_f32 else f"a_{name}[i]"
        if (dtype if bits_to_f32 is None else "float32") != self.ftype:
            value = f"{self.f}({value})"
        return f"v_{name} = {value}"

    def store(self, name: str, dtype: str, value: str, masked: bool = False,
              rounding: Rounding = Rounding.NEAREST_EVEN) -> str:
        _, _, _, f32_to_bits = STORAGE[dtype]
        if f32_to_bits is None:
            value = value if dtype == self.ftype else f"{_NP[dtype]}({value})"
        else:
            if self.ftype == "float64":  # via float32, as torch's float64 -> 16-bit casts do
                value = f"np.float32({value})"
            value = (f"{f32_to_bits}_sr({value}, rn_{name}[(lo & 3) + {self.element}])"
                     if rounding == Rounding.STOCHASTIC else f"{f32_to_bits}({value})")
        return f"a_{name}[i] = {value}"

    def round_to(self, value: str, dtype: str, tensor: bool = True) -> str:
        """Through the storage helpers (kernels/numba/helpers.py), which round a float64
        via float32 as torch does; float32 and float64 storage keep a float32 value."""
        if dtype in ("bfloat16", "float16"):
            _, _, bits_to_f32, f32_to_bits = STORAGE[dtype]
            value = f"{bits_to_f32}({f32_to_bits}({value}))"
        elif dtype == "float32" and self.ftype == "float64":
            value = f"np.float32({value})"
        else:
            return value
        return value if self.ftype == "float32" else f"{self.f}({value})"


def noise_lines(plan: KernelPlan, rounding: dict[str, Rounding], indent: str) -> list[str]:
    """Before the element loop of block ``lo .. lo + n - 1`` of bucket tensor ``j``: the
    block's noise for each stochastic store (``rn_<name>``), filled by a vectorized
    Philox (kernels/numba/philox.fill_noise16), so the element loop stays branch-free and
    one Philox call serves four elements; element ``lo + k`` reads ``rn_<name>[(lo & 3)
    + k]``."""
    return [line for name, r in rounding.items() if r == Rounding.STOCHASTIC for line in (
        f"{indent}rn_{name} = np.empty(n + 8, dtype=np.uint16)",
        f"{indent}fill_noise16(rn_{name}, lo, n, {SEED}, j, {STEP}, {salt(plan, name)})")]


def numba_source(plan: KernelPlan, param_dtype: str = "float32") -> str:
    """A module defining ``kernel(addresses, blocks, scalars)`` for one plan and dtype
    (multi-stage plans: see ``numba_reduce.py``)."""
    if param_dtype not in PARAM_DTYPES:
        raise CompileError(f"rule {plan.rule_name!r}: parameters of dtype {param_dtype!r} are "
                           f"not supported by the numba backend ({PARAM_DTYPES})")
    if plan.reduce_stages:
        from .numba_reduce import stages_source
        return stages_source(plan, param_dtype)
    ftype = compute_dtype(param_dtype)
    pr = NumbaPrinter(plan.rule_name, ftype, param_dtype)
    dtypes = storage_dtypes(plan, param_dtype, "numba")
    rounding = roundings(plan, dtypes)
    slots = list(dtypes)
    votes = vote_ops(plan)
    scalars = [f"    {s.name} = {_NP[ftype]}(scalars[{k}])" for k, s in enumerate(plan.scalar_args)]
    scalars += ["    " + line for line in
                sign_bits.numba_comm_scalars(votes, len(plan.scalar_args))]
    views = []
    for k, name in enumerate(slots):
        if dtypes[name] in PACKED:
            views += [" " * 8 + line for line in sign_bits.numba_view(name, k, dtypes[name])]
            continue
        ptr, size, _, _ = STORAGE[dtypes[name]]
        views.append(f"        a_{name} = carray({ptr}(addresses[{k}, j] + {size} * lo), n)")
    views += noise_lines(plan, rounding, " " * 8)
    loads = [line for r in plan.loads for line in (
        sign_bits.numba_load(r.name, votes[r.name], pr.f) if r.name in votes
        else [pr.load(r.name, dtypes[r.name])])]
    temps = [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    stores = [line for r, e in plan.stores for line in (
        sign_bits.numba_store(r.name, pr.doprint(e)) if dtypes[r.name] == SIGN_BITS
        else [pr.store(r.name, dtypes[r.name], pr.doprint(e), rounding=rounding[r.name])])]
    body = [" " * 12 + line for line in loads + temps + stores]
    packed = any(d in PACKED for d in dtypes.values())
    return render("numba_step.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  param_dtype=param_dtype, compute_dtype=ftype,
                  storage=", ".join(f"{n}={d}" for n, d in dtypes.items()),
                  slots="".join(f"{n!r}, " for n in slots),
                  storage_tuple="".join(f"{dtypes[n]!r}, " for n in slots),
                  n_scalars=str(len(plan.scalar_args)), kernel=kernel_name(plan, param_dtype),
                  scalars="\n".join(scalars) or "    pass",
                  views="\n".join(views), body="\n".join(body) or "            pass",
                  packed_import="\nfrom optforge.kernels.numba.quant_helpers import ptr_u8"
                  "  # noqa: E402 - packed sign bits" if packed else "")
