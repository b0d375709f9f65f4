"""The performance model: bytes read and written per parameter element.

An optimizer step is memory-bound, so these bytes divided by the step time is the
bandwidth it achieves; benchmarks compare that with a copy kernel over the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..quant_format import parse
from ..plan import KernelPlan, TensorRef

# packed sign bits (compiler/packed_signs.py): 1 bit per element; a ``sign_votes`` load
# reads every worker's bit, counted here for one worker (N workers: N / 8 bytes), and the
# flag byte per parameter is left out
DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2,
               "sign_bits": 0.125, "sign_votes": 0.125}


@dataclass(frozen=True)
class Traffic:
    read: float  # (fractional for 8-bit states and packed sign bits)
    written: float

    @property
    def total(self) -> int:
        return self.read + self.written


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a storage dtype; an 8-bit state: its code plus its share of
    the block's float32 scale (1 + 4 / block)."""
    fmt = parse(dtype)
    return 1 + 4 / fmt.block if fmt is not None else DTYPE_BYTES[dtype]


def _bytes(ref: TensorRef, param_dtype: str) -> float:
    dtype = ref.dtype or param_dtype
    if parse(dtype) is not None:
        return dtype_bytes(dtype)
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"tensor {ref.name!r}: unknown dtype {dtype!r} "
                         f"(known: {sorted(DTYPE_BYTES)})")
    return DTYPE_BYTES[dtype]


def traffic(plan: KernelPlan, param_dtype: str = "float32") -> Traffic:
    """Bytes per element for one step of ``plan`` when params (and grads) are ``param_dtype``.

    A multi-stage plan reads each reduce stage's inputs once more: that extra pass is
    the price of a reduction, and it shows here; so does a matrix rule's pre-stage pass.
    """
    reduce_loads = [r for stage in plan.reduce_stages for r in stage.loads]
    # per-element loads of the matrix stage (matrix states and batches are not per element)
    matrix_loads = [r for stage in plan.matrix_stages for r in stage.loads
                    if not getattr(plan.states.get(r.name), "shape", ())]
    read = sum(_bytes(r, param_dtype) for r in plan.loads + reduce_loads + matrix_loads)
    # a matrix stage writes its buffers; the matmuls inside it are not counted
    buffers = sum(DTYPE_BYTES[plan.states[name].dtype] for stage in plan.matrix_stages
                  for name in stage.buffers)
    written = sum(_bytes(r, param_dtype) for r, _ in plan.stores) + buffers
    if plan.pre_plan is not None:  # the pre-stage's pass (it writes the pre<i> buffers)
        pre = traffic(plan.pre_plan, param_dtype)
        read, written = read + pre.read, written + pre.written
    return Traffic(read, written)
