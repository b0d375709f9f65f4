"""The backend's float32 -> bfloat16 roundings applied to one tensor.

The very helpers every generated kernel inlines (``triton_helpers.py.tmpl``), behind
a small host function: tests compare them with torch's ``.to(torch.bfloat16)`` and
check that stochastic rounding is unbiased and seeded; users can round a tensor the
way the optimizer stores it.
"""
from __future__ import annotations

import torch

from ...compiler.codegen import rounding_kernel_source
from ..cache import load_module
from .available import check_interpreter_consistent, interpreter_on
from .configs import FP_FUSION

BLOCK_SIZE = 4096


def round_to_bf16(x: torch.Tensor, stochastic: bool = False, seed: int = 0) -> torch.Tensor:
    """``x`` (float32, contiguous) rounded to bfloat16: nearest-even, or stochastically
    with Philox draws from ``seed`` (the same seed gives the same bits)."""
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_bf16 expects a float32 tensor, got {x.dtype}")
    if not x.is_contiguous():
        raise ValueError(f"round_to_bf16 needs a contiguous tensor (strides {x.stride()})")
    if not 0 <= seed < 2**31:
        raise ValueError(f"seed {seed} is outside [0, 2**31)")
    bits = torch.empty(x.shape, dtype=torch.int16, device=x.device)
    n = x.numel()
    if n:
        if stochastic:
            check_interpreter_consistent()
        kernel = load_module(rounding_kernel_source(interpreter_on()), "triton").round_to_bf16
        kernel[(triton_cdiv(n, BLOCK_SIZE),)](x, bits, n, seed, STOCHASTIC=stochastic,
                                              BLOCK_SIZE=BLOCK_SIZE,
                                              enable_fp_fusion=FP_FUSION)
    return bits.view(torch.bfloat16)


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b
