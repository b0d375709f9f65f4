"""Stochastic rounding for the torch backend: the Philox stream of ``kernels/numba/
philox.py`` (and of Triton's ``tl.philox``) in torch integer ops, on any device.

Values are int64 tensors holding 32 bits. A product of two 32-bit values needs 64
unsigned bits: int64 multiplication wraps modulo 2**64 (two's complement), so its bits
are the unsigned product's; the high word is ``(product >> 32) & 0xFFFFFFFF`` (the mask
drops the arithmetic shift's sign copies).
"""
from __future__ import annotations

import torch

ROUNDS = 10
MUL_A, MUL_B = 0xD2511F53, 0xCD9E8D57
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85
LOW32 = 0xFFFFFFFF


def philox4x32(c0, c1, c2, c3, k0: int, k1: int):
    """Ten Philox rounds; counters are int64 tensors (or ints) of 32-bit values."""
    for _ in range(ROUNDS):
        product_b = c2 * MUL_B
        product_a = c0 * MUL_A
        c0 = ((product_b >> 32) & LOW32) ^ c1 ^ k0
        c2 = ((product_a >> 32) & LOW32) ^ c3 ^ k1
        c1 = product_b & LOW32
        c3 = product_a & LOW32
        k0 = (k0 + KEY_A) & LOW32
        k1 = (k1 + KEY_B) & LOW32
    return c0, c1, c2, c3


def noise16(n: int, seed: int, tid: int, step: int, salt: int, device) -> torch.Tensor:
    """The 16-bit noise of elements ``0..n-1`` (int64): see kernels/numba/philox.py."""
    quads = (n + 3) // 4
    q = torch.arange(quads, dtype=torch.int64, device=device)
    full = torch.full_like(q, 0)
    words = philox4x32(q & LOW32, q >> 32, full + (int(step) & LOW32),
                       full + (int(salt) & LOW32), int(seed) & LOW32, int(tid) & LOW32)
    # element 4k + j takes word j of counter k
    return (torch.stack(words, dim=1).reshape(-1)[:n]) & 0xFFFF


def bf16_stochastic(x: torch.Tensor, seed, tid: int, step, salt: int) -> torch.Tensor:
    """``x`` rounded to bfloat16 stochastically (unbiased), with the shared Philox noise
    of its elements in row-major order. NaN becomes torch's quiet NaN."""
    flat = x.detach().to(torch.float32).contiguous().reshape(-1)
    bits = flat.view(torch.int32).to(torch.int64) & LOW32
    noise = noise16(flat.numel(), int(seed), tid, int(step), salt, flat.device)
    rounded = ((bits + noise) >> 16) & 0xFFFF
    rounded = torch.where(torch.isnan(flat), torch.full_like(rounded, 0x7FC0), rounded)
    # int16 holds the 16 bits two's-complement: values past 0x7FFF wrap to negatives
    as_int16 = torch.where(rounded >= 0x8000, rounded - 0x10000, rounded).to(torch.int16)
    return as_int16.view(torch.bfloat16).reshape(x.shape)


def store(target: torch.Tensor, value: torch.Tensor, seed, tid: int, step, salt: int) -> None:
    """``target.copy_(value)``, rounding stochastically where ``target`` is bfloat16 or
    float16 (float32 and float64 targets take the value exactly, as the other backends do)."""
    if target.dtype not in (torch.bfloat16, torch.float16):
        target.copy_(value)
        return
    value = torch.as_tensor(value, dtype=torch.float32, device=target.device)
    rounding = bf16_stochastic if target.dtype == torch.bfloat16 else f16_stochastic
    target.copy_(rounding(value.expand(target.shape), seed, tid, step, salt))


def f16_stochastic(x: torch.Tensor, seed, tid: int, step, salt: int) -> torch.Tensor:
    """``x`` rounded to float16 stochastically, bit for bit as kernels/numba/philox.py's
    ``f32_to_f16_sr`` (see there), with the shared noise."""
    flat = x.detach().to(torch.float32).contiguous().reshape(-1)
    bits = flat.view(torch.int32).to(torch.int64) & LOW32
    noise = noise16(flat.numel(), int(seed), tid, int(step), salt, flat.device)
    sign, a = (bits >> 16) & 0x8000, bits & 0x7FFFFFFF
    normal = (a - 0x38000000 + (noise >> 3)) >> 13
    exponent = a >> 23
    significand = (a & 0x7FFFFF) | torch.where(exponent > 0, 0x800000, 0)
    shift = (126 - exponent.clamp(min=1)).clamp(max=40)
    scaled = torch.where(shift >= 16, noise << (shift - 16).clamp(min=0),
                         noise >> (16 - shift).clamp(min=0))
    subnormal = torch.where(shift >= 40, 0, (significand + scaled) >> shift)
    out = torch.where(a >= 0x38800000, normal, subnormal)
    out = torch.where(a >= 0x47800000, 0x7C00, out)
    out = sign | torch.where(a > 0x7F800000, 0x7E00, out)
    as_int16 = torch.where(out >= 0x8000, out - 0x10000, out).to(torch.int16)
    return as_int16.view(torch.float16).reshape(x.shape)
