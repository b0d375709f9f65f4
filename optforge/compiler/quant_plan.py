"""What a plan with 8-bit states asks of a backend (compiler/quant_format.py has the format).

Such a plan is a single elementwise stage: its kernel loads each 8-bit state's codes and
its block's scale, dequantizes in registers, updates in float32, and requantizes each
block with the block's new absmax before storing, one pass over memory. A rule with
reduce, matrix or pre-stages is refused (its states would be read in several passes).
"""
from __future__ import annotations

from dataclasses import replace

from .errors import CompileError
from .plan import KernelPlan, StateKind, StorageDtype
from .quant_format import QuantFormat, parse


def quantized_states(plan: KernelPlan) -> dict[str, QuantFormat]:
    """``{state name: format}`` of the plan's 8-bit states, in plan order."""
    found = {name: parse(decl.dtype) for name, decl in plan.states.items()}
    return {name: fmt for name, fmt in found.items() if fmt is not None}


def check_quantizable(plan: KernelPlan, backend: str) -> dict[str, QuantFormat]:
    """The plan's 8-bit states, or a CompileError naming the rule and what stands in the
    way (a stage before the elementwise one)."""
    formats = quantized_states(plan)
    inputs = plan.states_of(StateKind.INPUT)
    if plan.reduce_stages or plan.matrix_stages or plan.pre_plan is not None or inputs:
        raise CompileError(
            f"rule {plan.rule_name!r}: 8-bit states ({', '.join(formats)}) need a rule whose "
            "update is one elementwise pass; this one has reduce, matrix or pre-stages, or "
            f"inputs the runtime computes from its states ({backend} backend). Store its "
            "states in bfloat16 or float32 instead")
    return formats


def written(plan: KernelPlan, formats: dict[str, QuantFormat]) -> dict[str, QuantFormat]:
    """The 8-bit states the plan stores (a read-only one is never requantized: requantizing
    a dequantized block can change its scale)."""
    stored = {r.name for r, _ in plan.stores}
    return {name: fmt for name, fmt in formats.items() if name in stored}


def float32_plan(plan: KernelPlan) -> KernelPlan:
    """``plan`` with every 8-bit state stored in float32: the math an 8-bit kernel does
    between dequantizing and requantizing (the torch backend runs it on unpacked states)."""
    def f32(ref):
        return replace(ref, dtype=StorageDtype.FLOAT32) if parse(ref.dtype) else ref
    return replace(plan,
                   loads=[f32(r) for r in plan.loads],
                   stores=[(f32(r), e) for r, e in plan.stores],
                   states={n: replace(d, dtype=StorageDtype.FLOAT32) if parse(d.dtype) else d
                           for n, d in plan.states.items()})
