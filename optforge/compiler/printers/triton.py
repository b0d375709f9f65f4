"""Prints a plan's elementwise stage as ONE ``@triton.jit`` multi-tensor kernel.

Whitelist printer (as TorchInductor warns, inheriting Python printing is unsafe where
Triton follows C semantics): every supported SymPy node has a method, anything else
raises CompileError naming it. The kernel source obeys the interpreter's traps too:

* no libdevice: sqrt/div are the IEEE-rounded ``tl.sqrt_rn``/``tl.div_rn`` (parity with
  torch), general powers are ``exp2(y * log2(x))``, integer powers products;
* run-time scalars arrive as Python floats (float64 in the interpreter): each is cast
  to float32 once at the top, so interpreted and compiled math agree;
* bfloat16 converts natively when compiled; for the interpreter (``interpreted=True``,
  whose ``.to(tl.bfloat16)`` truncates) it moves as raw uint16 bits rounded by hand.
  Nearest-even or stochastic per tensor (4 Philox draws per call);
* the tail path masks every access; offsets are int64 (tensors past 2**31 elements).

The tensors of one launch are reached through a table of int64 addresses (one row per
tensor role) and a block map (program -> tensor, first element): see
``kernels/triton/layout.py`` for the host side. No torch here: dtypes are strings.
"""
from __future__ import annotations

import hashlib
import math

import sympy as sp
from sympy.core.relational import Relational

from ...dsl.symbols import TensorSymbol
from ..errors import CompileError
from ..plan import ElemTemp, KernelPlan, ScalarTemp, TensorRef
from ..templates import render
from .infix import InfixArithmetic
from . import rounding_spellings as spell
from ..rounding import salt

# storage dtype -> pointer element type in the kernel (compiled; see pointer_type)
TRITON_DTYPES = {"float32": "tl.float32", "float16": "tl.float16", "bfloat16": "tl.bfloat16"}
_UNARY = {sp.Abs: "tl.abs", sp.exp: "tl.exp", sp.log: "tl.log"}
_REL = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
MAX_INT_EXPONENT = 64


def pointer_type(dtype: str, interpreted: bool) -> str:
    # the interpreter reads bfloat16 wrongly: its kernels move the raw bits
    return "tl.uint16" if interpreted and dtype == "bfloat16" else TRITON_DTYPES[dtype]


def helpers(interpreted: bool) -> str:
    """The device helpers, with the bfloat16 conversions for compiled or interpreted use."""
    return render("triton_helpers.py", bf16_helpers=render(
        "triton_bf16_bits.py" if interpreted else "triton_bf16_native.py"))


def rng_lines(stochastic, plan: KernelPlan | None = None, marked=frozenset()) -> str:
    """Per stochastic tensor, the block's 16-bit noise (before the full/tail branch):
    ``stochastic`` ones seeded by a ``seed_<name>`` argument (TritonLauncher's
    ``stochastic=``), ``marked`` ones by the plan's seed and step (compiler/rounding.py)."""
    lines = [f"    noise_{n} = philox_noise16(seed_{n}, tid, start // 4, 0, "
             f"{salt(plan, n) if plan is not None else 0}, BLOCK_SIZE)"
             for n in sorted(stochastic)]
    lines += spell.triton_plan_rng(plan, marked) if plan is not None else []
    return "".join(line + "\n" for line in lines)


def local(sym: sp.Symbol) -> str:
    return f"v_{sym.name}" if isinstance(sym, TensorSymbol) else sym.name


class TritonPrinter(InfixArithmetic):
    def __init__(self, rule_name: str):
        self.rule_name = rule_name

    def _fail(self, e, why: str = "") -> CompileError:
        return CompileError(f"rule {self.rule_name!r}: the triton printer does not support "
                            f"{type(e).__name__} in {sp.sstr(e)}{why}")

    def tensor(self, e) -> bool:
        return any(isinstance(s, (TensorSymbol, ElemTemp)) for s in e.free_symbols)

    def doprint(self, e) -> str:
        method = getattr(self, "_print_" + type(e).__name__, None)
        if method is not None:
            return method(e)
        for cls, fn in _UNARY.items():
            if isinstance(e, cls):
                return f"{fn}({self.doprint(e.args[0])})"
        if isinstance(e, Relational) and e.rel_op in _REL:
            return f"({self.doprint(e.lhs)} {_REL[e.rel_op]} {self.doprint(e.rhs)})"
        if isinstance(e, (TensorSymbol, ElemTemp, ScalarTemp)):  # loaded, temp, kernel arg
            return local(e)
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            return self._number(e)
        raise self._fail(e)

    def _number(self, e) -> str:
        value = float(e)
        if not math.isfinite(value):
            raise self._fail(e, " (a non-finite constant)")
        # A float literal: Triton makes it a float32 constant; never an int (C division).
        return f"({value!r})" if value < 0 else repr(value)

    def _print_Mul(self, e):
        num, den = self.split_product(e)
        out = "(" + (" * ".join(num) or "1.0") + ")"
        for d in den:  # one IEEE division per factor, in order, as torch does
            out = f"tl.div_rn({out}, {d})"
        return out

    def _print_Pow(self, e):
        base, exp = e.base, e.exp
        b = self.doprint(base)
        if exp == sp.Rational(1, 2):
            return f"tl.sqrt_rn({b})"
        if exp == sp.Rational(-1, 2):
            return f"tl.div_rn(1.0, tl.sqrt_rn({b}))"
        if exp == -1:
            return f"tl.div_rn(1.0, {b})"
        if exp.is_Integer:
            n = int(exp)
            if n == 0:
                return "1.0"
            if abs(n) > MAX_INT_EXPONENT:
                raise self._fail(e, f" (integer exponent beyond +-{MAX_INT_EXPONENT})")
            product = "(" + " * ".join([b] * abs(n)) + ")"
            return product if n > 0 else f"tl.div_rn(1.0, {product})"
        # x**y = 2**(y*log2(x)): NaN for x < 0, as torch.pow with a fractional exponent.
        return f"tl.exp2({self.doprint(exp)} * tl.log2({b}))"

    def _print_sign(self, e):
        return f"sign_f32({self.doprint(e.args[0])})"  # in triton_helpers.py.tmpl

    def _minmax(self, e, fn):
        # propagate NaN like torch.maximum/minimum (Triton's default drops it)
        out = self.doprint(e.args[0])
        for a in e.args[1:]:
            out = f"{fn}({out}, {self.doprint(a)}, propagate_nan=tl.PropagateNan.ALL)"
        return out

    def _print_ParamRound(self, e):  # compiler/storage.py (Kahan-compensated updates)
        return spell.triton_param_round(self.doprint(e.args[0]), getattr(self, "param_dtype", None))

    def _print_Max(self, e):
        return self._minmax(e, "tl.maximum")

    def _print_Min(self, e):
        return self._minmax(e, "tl.minimum")

    def _print_Piecewise(self, e):
        (value, cond), rest = e.args[0], e.args[1:]
        if cond == sp.true or not rest:
            return self.doprint(value)
        other = self.doprint(sp.Piecewise(*rest)) if len(rest) > 1 or rest[0][1] != sp.true \
            else self.doprint(rest[0][0])
        return f"tl.where({self.doprint(cond)}, {self.doprint(value)}, {other})"

    def _logic(self, e, op: str, scalar_true: str, scalar_false: str) -> str:
        """A tensor condition combined with scalar ones (``g > 0 & step() > 1``): each
        scalar one selects with tl.where, since `tensor & scalar` does not type-check in
        the interpreter (found by the cross-backend property test)."""
        scalar_temps = getattr(self, "scalar_temps", ())
        per_element = [a for a in e.args if any(
            isinstance(s, TensorSymbol) or (isinstance(s, ElemTemp) and s not in scalar_temps)
            for s in a.free_symbols)]
        scalars = [a for a in e.args if a not in per_element]
        out = "(" + f" {op} ".join(self.doprint(a) for a in per_element or scalars) + ")"
        for a in scalars if per_element else ():
            out = f"tl.where({self.doprint(a)}, {scalar_true or out}, {scalar_false or out})"
        return out

    def _print_And(self, e):
        return self._logic(e, "&", "", "False")

    def _print_Or(self, e):
        return self._logic(e, "|", "True", "")

    def _print_Not(self, e):
        return f"(~{self.doprint(e.args[0])})"


def tensor_refs(plan: KernelPlan) -> list[TensorRef]:
    """Every tensor the kernel touches, in address-table row order: p, g, then states."""
    by_name = {r.name: r for stage in plan.reduce_stages for r in stage.loads}
    by_name.update({r.name: r for r in plan.loads})
    by_name.update({r.name: r for r, _ in plan.stores})
    order = ["p", "g"] + list(plan.states)
    return [by_name[n] for n in order if n in by_name]


def storage_dtypes(plan: KernelPlan, param_dtype: str) -> dict[str, str]:
    """Each touched tensor's storage dtype when the parameters are ``param_dtype``."""
    out = {}
    for ref in tensor_refs(plan):
        dtype = ref.dtype or param_dtype
        if dtype not in TRITON_DTYPES:
            raise CompileError(f"rule {plan.rule_name!r}: tensor {ref.name!r} is stored as "
                               f"{dtype}; the triton backend supports "
                               f"{sorted(TRITON_DTYPES)} (use backend='torch')")
        out[ref.name] = dtype
    return out


def kernel_name(plan: KernelPlan, dtypes: dict[str, str], stochastic: frozenset,
                interpreted: bool = False) -> str:
    key = f"{plan.fingerprint()}|{sorted(dtypes.items())}|{sorted(stochastic)}|{interpreted}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(c if c.isascii() and c.isalnum() else "_" for c in plan.rule_name.lower())
    return f"optforge_{safe}_{digest}"


def _load(ref: TensorRef, dtype: str, masked: bool) -> str:
    raw = (f"tl.load(ptr_{ref.name} + offs, mask=mask, other=0)" if masked
           else f"tl.load(ptr_{ref.name} + offs)")
    if dtype == "bfloat16":
        return f"v_{ref.name} = bf16_to_f32({raw})"
    return f"v_{ref.name} = {raw}.to(tl.float32)"


def _store(ref: TensorRef, dtype: str, stochastic: bool, masked: bool) -> str:
    value = f"o_{ref.name}"  # o_: a state "tensors" must not be n_tensors
    if dtype == "bfloat16":
        value = (f"f32_to_bf16_sr({value}, noise_{ref.name})" if stochastic
                 else f"f32_to_bf16_rne({value})")
    elif dtype == "float16":
        value = (f"f32_to_f16_sr({value}, noise_{ref.name}).to(tl.float16, bitcast=True)"
                 if stochastic else f"{value}.to(tl.float16)")  # (nearest even)
    return f"tl.store(ptr_{ref.name} + offs, {value}{', mask=mask' if masked else ''})"


def triton_source(plan: KernelPlan, param_dtype: str = "float32",
                  stochastic: frozenset | set | tuple = (), interpreted: bool = False) -> str:
    """A module defining one kernel for ``plan`` with params stored as ``param_dtype``.

    ``stochastic`` names the written bf16 tensors ("p", a state) rounded stochastically
    (each gets a ``seed_<name>`` argument); the others round to nearest even.
    ``interpreted``: for TRITON_INTERPRET=1 (bfloat16 as raw bits, rounded by hand).
    """
    stochastic = frozenset(stochastic)
    dtypes = storage_dtypes(plan, param_dtype)
    written = {r.name for r, _ in plan.stores}
    for name in sorted(stochastic):
        if name not in written or dtypes[name] != "bfloat16":
            raise CompileError(f"rule {plan.rule_name!r}: stochastic rounding asked for "
                               f"{name!r}, which is not a written bfloat16 tensor here "
                               f"(written: {sorted((n, dtypes[n]) for n in written)})")
    marked = spell.rounded_stochastically(plan, dtypes)
    if plan.reduce_stages:  # reduce kernels + an elementwise kernel reading their results
        from .triton_reduce import stages_source
        return stages_source(plan, dtypes, stochastic, interpreted)
    pr = TritonPrinter(plan.rule_name)
    pr.param_dtype = dtypes.get("p", param_dtype)
    refs = tensor_refs(plan)
    rows = [f"    ptr_{r.name} = tl.multiple_of(tl.load(addr_tab + {i} * n_tensors + tid)"
            f".to(tl.pointer_type({pointer_type(dtypes[r.name], interpreted)})), ALIGN)"
            for i, r in enumerate(refs)]
    # temporaries CSE made of scalar conditions (e0 = s0 != 0.0) are scalars for _logic
    pr.scalar_temps = set()
    for s, e in plan.temps:
        if not any(isinstance(x, TensorSymbol) or (isinstance(x, ElemTemp)
                   and x not in pr.scalar_temps) for x in e.free_symbols):
            pr.scalar_temps.add(s)
    temps = [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    outputs = []
    for ref, e in plan.stores:
        value = pr.doprint(e)
        if not pr.tensor(e):  # the same value for every element: broadcast it
            value = f"{value} + tl.zeros([BLOCK_SIZE], tl.float32)"
        outputs.append(f"o_{ref.name} = {value}")

    def body(masked: bool) -> str:
        lines = ([_load(r, dtypes[r.name], masked) for r in plan.loads] + temps + outputs
                 + [_store(r, dtypes[r.name], r.name in stochastic | marked, masked)
                    for r, _ in plan.stores])
        return "\n".join("        " + line for line in lines)

    scalars = [s.name for s in plan.scalar_args]
    seeds = [f"seed_{n}" for n in sorted(stochastic)]
    rng = rng_lines(stochastic, plan, marked)
    name = kernel_name(plan, dtypes, stochastic, interpreted)
    return render("triton_kernel.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  dtypes=", ".join(f"{k}:{v}" for k, v in dtypes.items()),
                  stochastic=", ".join(sorted(stochastic)) or "none",
                  helpers=helpers(interpreted), kernel=name,
                  args="".join(f"{a}, " for a in scalars + seeds),
                  casts="\n".join(f"    {s} = tl.cast({s}, tl.float32)" for s in scalars)
                  or "    pass",
                  pointers="\n".join(rows), rng=rng, full=body(False), tail=body(True))


def rounding_test_source(interpreted: bool = False) -> str:
    """A module with the rounding helpers and a kernel applying them to one tensor
    (for tests of the helpers and for ``kernels/triton/rounding.py``)."""
    return render("triton_round_kernel.py", helpers=helpers(interpreted))
