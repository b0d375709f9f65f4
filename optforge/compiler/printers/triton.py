"""Prints a plan's elementwise stage as ONE ``@triton.jit`` multi-tensor kernel: the triton
spellings of ``base.BasePrinter`` (which refuses any node it does not know; as
TorchInductor warns, inheriting Python printing is unsafe where Triton follows C
semantics). The kernel source obeys the interpreter's traps too:

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

import sympy as sp

from ...dsl.symbols import TensorSymbol
from ..abi import kernel_name as abi_kernel_name, roundings, storage_dtypes as abi_storage_dtypes
from ..abi import launcher_seeded, tensor_refs
from ..packed_signs import SIGN_BITS, SIGN_VOTES, vote_ops
from ..plan import ElemTemp, KernelPlan, Rounding, ScalarTemp
from ..rounding import SEED, STEP, salt
from ..templates import render
from . import sign_bits
from .base import BasePrinter

__all__ = ["TritonPrinter", "kernel_name", "storage_dtypes", "tensor_refs", "triton_source"]

# storage dtype -> pointer element type in the kernel (compiled; see pointer_type)
TRITON_DTYPES = {"float32": "tl.float32", "float16": "tl.float16", "bfloat16": "tl.bfloat16",
                 SIGN_BITS: "tl.uint8", SIGN_VOTES: "tl.uint8"}  # packed_signs.py
MAX_INT_EXPONENT = 64


def storage_dtypes(plan: KernelPlan, param_dtype: str) -> dict[str, str]:
    """Each touched tensor's storage dtype when the parameters are ``param_dtype`` (the
    ABI's, for the triton backend; catalogue/aot_sweep.py asks here)."""
    return abi_storage_dtypes(plan, param_dtype, "triton")


def kernel_name(plan: KernelPlan, dtypes: dict[str, str], stochastic: frozenset,
                interpreted: bool = False) -> str:
    return abi_kernel_name(plan, str(sorted(dtypes.items())), str(sorted(stochastic)),
                           str(interpreted))


def pointer_type(dtype: str, interpreted: bool) -> str:
    # the interpreter reads bfloat16 wrongly: its kernels move the raw bits
    return "tl.uint16" if interpreted and dtype == "bfloat16" else TRITON_DTYPES[dtype]


def helpers(interpreted: bool) -> str:
    """The device helpers, with the bfloat16 conversions for compiled or interpreted use."""
    return render("triton_helpers.py", bf16_helpers=render(
        "triton_bf16_bits.py" if interpreted else "triton_bf16_native.py"))


def rng_lines(plan: KernelPlan, rounding: dict[str, Rounding]) -> str:
    """Per stochastic tensor, the block's 16-bit noise (before the full/tail branch), from
    the one Philox stream (compiler/rounding.py): seeded by the launcher's ``seed_<name>``
    argument (``abi.launcher_seeded``) or by the plan's own ``sr_seed`` and ``sr_step``."""
    seeded = launcher_seeded(plan, rounding)
    marked = [n for n, r in rounding.items() if r == Rounding.STOCHASTIC and n not in seeded]
    lines = [f"    noise_{n} = philox_noise16(seed_{n}, tid, start // 4, 0, {salt(plan, n)}, "
             "BLOCK_SIZE)" for n in seeded]
    if marked:
        lines += [f"    rng_seed = {SEED}.to(tl.int64)", f"    rng_step = {STEP}.to(tl.uint32)"]
    lines += [f"    noise_{n} = philox_noise16(rng_seed, tid, start // 4, rng_step, "
              f"{salt(plan, n)}, BLOCK_SIZE)" for n in marked]
    return "".join(line + "\n" for line in lines)


class TritonPrinter(BasePrinter):
    backend = "triton"
    UNARY = {sp.Abs: "tl.abs", sp.exp: "tl.exp", sp.log: "tl.log",
             sp.sign: "sign_f32"}  # sign_f32: in triton_helpers.py.tmpl
    SQRT, MAX, MIN = "tl.sqrt_rn", "tl.maximum", "tl.minimum"  # no libdevice: IEEE-rounded
    SYMBOLS = (TensorSymbol, ElemTemp, ScalarTemp)  # loaded, temporary, kernel argument

    def literal(self, value: float) -> str:
        # A float literal: Triton makes it a float32 constant; never an int (C division).
        return f"({value!r})" if value < 0 else repr(value)

    def divide(self, a: str, b: str) -> str:
        return f"tl.div_rn({a}, {b})"

    def product(self, num: list[str], den: list[str]) -> str:
        out = "(" + (" * ".join(num) or "1.0") + ")"
        for d in den:  # one IEEE division per factor, in order, as torch does
            out = self.divide(out, d)
        return out

    def power(self, e: sp.Pow, base: str) -> str:
        if e.exp.is_Integer:
            n = int(e.exp)
            if n == 0:
                return "1.0"
            if abs(n) > MAX_INT_EXPONENT:
                raise self.refuse(e, f" (integer exponent beyond +-{MAX_INT_EXPONENT})")
            product = "(" + " * ".join([base] * abs(n)) + ")"
            return product if n > 0 else self.divide("1.0", product)
        # x**y = 2**(y*log2(x)): NaN for x < 0, as torch.pow with a fractional exponent.
        return f"tl.exp2({self.doprint(e.exp)} * tl.log2({base}))"

    def pairwise(self, fn: str, a: str, b: str) -> str:
        # propagate NaN like torch.maximum/minimum (Triton's default drops it)
        return f"{fn}({a}, {b}, propagate_nan=tl.PropagateNan.ALL)"

    def select(self, e, cond, value: str, other: str) -> str:
        return f"tl.where({self.doprint(cond)}, {value}, {other})"

    def logic(self, e, op: str) -> str:
        """A tensor condition combined with scalar ones (``g > 0 & step() > 1``): each
        scalar one selects with tl.where, since `tensor & scalar` does not type-check in
        the interpreter (found by the cross-backend property test)."""
        op, scalar_true, scalar_false = {"and": ("&", "", "False"), "or": ("|", "True", "")}[op]
        per_element = [a for a in e.args if self.tensor(a)]
        scalars = [a for a in e.args if a not in per_element]
        out = "(" + f" {op} ".join(self.doprint(a) for a in per_element or scalars) + ")"
        for a in scalars if per_element else ():
            out = f"tl.where({self.doprint(a)}, {scalar_true or out}, {scalar_false or out})"
        return out

    def _print_Not(self, e):
        return f"(~{self.doprint(e.args[0])})"

    def load(self, name: str, dtype: str, masked: bool = False) -> str:
        raw = (f"tl.load(ptr_{name} + offs, mask=mask, other=0)" if masked
               else f"tl.load(ptr_{name} + offs)")
        if dtype == "bfloat16":
            return f"v_{name} = bf16_to_f32({raw})"
        return f"v_{name} = {raw}.to(tl.float32)"

    def store(self, name: str, dtype: str, value: str, masked: bool = False,
              rounding: Rounding = Rounding.NEAREST_EVEN) -> str:
        stochastic = rounding == Rounding.STOCHASTIC
        if dtype == "bfloat16":
            value = (f"f32_to_bf16_sr({value}, noise_{name})" if stochastic
                     else f"f32_to_bf16_rne({value})")
        elif dtype == "float16":
            value = (f"f32_to_f16_sr({value}, noise_{name}).to(tl.float16, bitcast=True)"
                     if stochastic else f"{value}.to(tl.float16)")  # (nearest even)
        return f"tl.store(ptr_{name} + offs, {value}{', mask=mask' if masked else ''})"

    def round_to(self, value: str, dtype: str, tensor: bool = True) -> str:
        """The stores' nearest-even roundings read back (math is float32 here)."""
        if dtype == "bfloat16":
            return f"bf16_to_f32(f32_to_bf16_rne({value}))"
        if dtype == "float16":
            return f"{value}.to(tl.float16).to(tl.float32)"
        return value  # float32 keeps the value exactly


def triton_source(plan: KernelPlan, param_dtype: str = "float32",
                  stochastic: frozenset | set | tuple = (), interpreted: bool = False) -> str:
    """A module defining one kernel for ``plan`` with params stored as ``param_dtype``.

    ``stochastic`` names the written bf16 tensors ("p", a state) the launcher rounds
    stochastically (each gets a ``seed_<name>`` argument); the stores the plan marks
    round stochastically too (``abi.roundings``); the others round to nearest even.
    ``interpreted``: for TRITON_INTERPRET=1 (bfloat16 as raw bits, rounded by hand).
    """
    dtypes = storage_dtypes(plan, param_dtype)
    rounding = roundings(plan, dtypes, frozenset(stochastic))
    if plan.reduce_stages:  # reduce kernels + an elementwise kernel reading their results
        from .triton_reduce import stages_source
        return stages_source(plan, dtypes, rounding, interpreted)
    pr = TritonPrinter(plan.rule_name, dtypes.get("p", param_dtype))
    # temporaries CSE made of scalar conditions (e0 = s0 != 0.0) are scalars for logic()
    pr.note_scalar_temps(plan.temps)
    temps = [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    outputs = output_lines(pr, plan)

    votes = vote_ops(plan)

    def body(masked: bool) -> str:
        loads = [line for r in plan.loads for line in (
            sign_bits.triton_load(r.name, votes[r.name], masked) if r.name in votes
            else [pr.load(r.name, dtypes[r.name], masked)])]
        lines = loads + temps + outputs + store_lines(pr, plan, dtypes, rounding, masked)
        return "\n".join("        " + line for line in lines)

    return render_module("triton_kernel.py", plan, dtypes, rounding, interpreted,
                         pointers="\n".join(pointer_rows(plan, dtypes, interpreted)),
                         full=body(False), tail=body(True))


def pointer_rows(plan: KernelPlan, dtypes: dict[str, str], interpreted: bool,
                 names=None) -> list[str]:
    """Each tensor's pointer from its row of the address table (``names``: only those)."""
    return [f"    ptr_{r.name} = tl.multiple_of(tl.load(addr_tab + {i} * n_tensors + tid)"
            f".to(tl.pointer_type({pointer_type(dtypes[r.name], interpreted)})), ALIGN)"
            for i, r in enumerate(tensor_refs(plan)) if names is None or r.name in names]


def output_lines(pr: TritonPrinter, plan: KernelPlan) -> list[str]:
    """``o_<name> = value`` per written tensor (``o_``: a state "tensors" must not be
    ``n_tensors``); a value without a loaded tensor in it is made a block."""
    out = []
    for ref, e in plan.stores:
        value = pr.doprint(e)
        if not pr.tensor(e):
            value = f"{value} + tl.zeros([BLOCK_SIZE], tl.float32)"
        out.append(f"o_{ref.name} = {value}")
    return out


def store_lines(pr: TritonPrinter, plan: KernelPlan, dtypes, rounding, masked: bool):
    return [line for r, _ in plan.stores for line in (
        sign_bits.triton_store(r.name, masked) if dtypes[r.name] == SIGN_BITS
        else [pr.store(r.name, dtypes[r.name], f"o_{r.name}", masked, rounding[r.name])])]


def render_module(template: str, plan: KernelPlan, dtypes: dict[str, str],
                  rounding: dict[str, Rounding], interpreted: bool, **fields) -> str:
    """Fill a kernel module template: the fields every triton module shares (kernel name,
    run-time scalars cast once, one seed per tensor the launcher rounds stochastically, the
    noise of every stochastic store) and ``fields``."""
    stochastic = sorted(n for n, r in rounding.items() if r == Rounding.STOCHASTIC)
    seeded = launcher_seeded(plan, rounding)
    seeds = [f"seed_{n}" for n in seeded]
    scalars = [s.name for s in plan.scalar_args]
    return render(template, rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  dtypes=", ".join(f"{k}:{v}" for k, v in dtypes.items()),
                  stochastic=", ".join(stochastic) or "none",
                  helpers=helpers(interpreted),
                  kernel=kernel_name(plan, dtypes, frozenset(seeded), interpreted),
                  args="".join(f"{a}, " for a in scalars + seeds)
                  + sign_bits.comm_args(vote_ops(plan)),
                  casts=scalar_casts(plan), rng=rng_lines(plan, rounding), **fields)


def scalar_casts(plan: KernelPlan) -> str:
    """Run-time scalars arrive as Python floats: each is cast to float32 once."""
    return "\n".join(f"    {s.name} = tl.cast({s.name}, tl.float32)"
                     for s in plan.scalar_args) or "    pass"


def rounding_test_source(interpreted: bool = False) -> str:
    """A module with the rounding helpers and a kernel applying them to one tensor
    (for tests of the helpers and for ``kernels/triton/rounding.py``)."""
    return render("triton_round_kernel.py", helpers=helpers(interpreted))
