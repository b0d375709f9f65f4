"""How each backend spells the storage options' code (see compiler/storage.py and
compiler/rounding.py): a stochastic 16-bit store, and ``ParamRound`` (a value rounded
to the parameter's storage dtype and read back, for Kahan-compensated updates).
"""
from __future__ import annotations

from ..plan import KernelPlan
from ..rounding import SEED, STEP, salt, stochastic_names

HALF_DTYPES = ("bfloat16", "float16")


def rounded_stochastically(plan: KernelPlan, dtypes: dict[str, str]) -> frozenset:
    """The marked stores that really round (16-bit ones; float32 stores are exact)."""
    return frozenset(n for n in stochastic_names(plan) if dtypes.get(n) in HALF_DTYPES)


# ---- numba ----------------------------------------------------------------------------
# A kernel fills a block's noise per stochastic tensor (``rn_<name>``) before the element
# loop, with a vectorized Philox (kernels/numba/philox.fill_noise16): the element loop
# stays branch-free, and one call serves four elements.
def numba_rng_init(plan: KernelPlan, names, indent: str) -> list[str]:
    """Before the element loop of block ``lo .. lo + n - 1`` of bucket tensor ``j``."""
    return [line for n in sorted(names) for line in (
        f"{indent}rn_{n} = np.empty(n + 8, dtype=np.uint16)",
        f"{indent}fill_noise16(rn_{n}, lo, n, {SEED}, j, {STEP}, {salt(plan, n)})")]


def numba_noise(name: str, offset: str) -> str:
    """The 16 noise bits of element ``lo + offset``."""
    return f"rn_{name}[(lo & 3) + {offset}]"


def numba_param_round(value: str, param_dtype: str | None) -> str:
    if param_dtype == "bfloat16":
        return f"bf16_to_f32(f32_to_bf16({value}))"
    if param_dtype == "float16":
        return f"f16_to_f32(f32_to_f16({value}))"
    return value  # float32 / float64 parameters keep the value exactly


# ---- triton ---------------------------------------------------------------------------
def triton_plan_rng(plan: KernelPlan, names) -> list[str]:
    """Per marked bf16 store, the block's noise (before the full/tail branch)."""
    if not names:
        return []
    lines = [f"    rng_seed = {SEED}.to(tl.int64)", f"    rng_step = {STEP}.to(tl.uint32)"]
    return lines + [f"    noise_{n} = philox_noise16(rng_seed, tid, start // 4, rng_step, "
                    f"{salt(plan, n)}, BLOCK_SIZE)" for n in sorted(names)]


def triton_param_round(value: str, param_dtype: str | None) -> str:
    if param_dtype == "bfloat16":
        return f"bf16_to_f32(f32_to_bf16_rne({value}))"
    if param_dtype == "float16":
        return f"{value}.to(tl.float16).to(tl.float32)"
    return value


# ---- torch ----------------------------------------------------------------------------
def torch_store(plan: KernelPlan, name: str, target: str, value: str) -> str:
    """The statement storing ``value`` into ``target`` (the generated step knows the
    tensor's dtype only at run time: kernels/philox_torch.store decides there)."""
    if name not in stochastic_names(plan):
        return f"{target}.copy_({value})"
    return f"_rnd.store({target}, {value}, {SEED}, tid, {STEP}, {salt(plan, name)})"


def torch_param_round(value: str) -> str:
    return f"{value}.to(t_p.dtype).to(compute_dtype)"
