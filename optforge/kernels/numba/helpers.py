"""Device-side helpers imported by generated Numba kernels.

Raw addresses become typed pointers here (the multi-tensor kernels receive a table
of ``data_ptr()`` values, see ``launcher.py``), and the storage conversions that
NumPy scalars cannot express are written on the bits:

* bfloat16 is stored as uint16: load = shift into the high half of a float32;
  store = round-to-nearest-even by hand (Numba has no bfloat16 type at all);
* float16 is stored as uint16 too: Numba's CPU target rejects ``np.float16``
  arithmetic, so both directions are explicit integer code (subnormals included);
* a float64 result stored to a 16-bit type goes through float32 first, exactly as
  torch's own float64 -> bfloat16/float16 casts do (c10 converts via float), so the
  torch backend and this one round identically (round-to-odd would be the correctly
  rounded answer, and would disagree with torch about once in 2**20 values).

Numba widens integer arithmetic to 64 bits, so every bit pattern is narrowed back
(``np.uint32(...)``) before ``.view``. Everything here is plain ``@njit`` (no parallelism): LLVM inlines these small
functions into the generated kernel's inner loop.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


def _pointer_intrinsic(element):
    """An intrinsic turning an integer address into ``element*`` (for ``numba.carray``)."""

    @intrinsic
    def as_pointer(typingctx, address):
        if not isinstance(address, types.Integer):
            return None
        sig = types.CPointer(element)(address)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    return as_pointer


ptr_f32 = _pointer_intrinsic(types.float32)
ptr_f64 = _pointer_intrinsic(types.float64)
ptr_u16 = _pointer_intrinsic(types.uint16)


@njit
def bf16_to_f32(bits):
    """bfloat16 bits (uint16) -> float32: exact, the bf16 bits are the float32's high half."""
    return np.uint32(np.uint32(bits) << np.uint32(16)).view(np.float32)


@njit
def f32_to_bf16(x):
    """float32 -> bfloat16 bits, round-to-nearest-even; NaN -> 0x7FC0, a quiet NaN (torch
    2.13 on CPU writes 0xFFFF for NaN; optforge's backends agree with each other on 0x7FC0).

    Branch-free as LLVM vectorizes it: both results are computed and the NaN test (a float
    ``f != f``: one unordered compare, where testing the bits took a mask and an integer
    compare) selects one (the AVX-512 loop of bf16-state AdamW: 44 instructions per 16
    elements instead of 48, 7% less time in cache; the same bits)."""
    f = np.float32(x)
    b = f.view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds ties to the even neighbour; the
    # carry out of the mantissa correctly bumps the exponent (up to inf).
    rounded = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1)))
                        >> np.uint32(16))
    return np.uint16(0x7FC0) if f != f else rounded


@njit
def f16_to_f32(bits):
    """float16 bits (uint16) -> float32, exactly (normals, subnormals, inf, NaN)."""
    h = np.uint32(bits)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    exponent = (h >> np.uint32(10)) & np.uint32(0x1F)
    mantissa = h & np.uint32(0x3FF)
    if exponent == np.uint32(0):  # zero or subnormal: mantissa * 2**-24, exact in float32
        magnitude = np.float32(mantissa) * np.float32(5.9604644775390625e-08)
        return -magnitude if sign else magnitude
    if exponent == np.uint32(31):  # inf / NaN (payload kept)
        return np.uint32(sign | np.uint32(0x7F800000) | (mantissa << np.uint32(13))).view(
            np.float32)
    return np.uint32(sign | ((exponent + np.uint32(112)) << np.uint32(23))
                     | (mantissa << np.uint32(13))).view(np.float32)


@njit
def f32_to_f16(x):
    """float32 -> float16 bits, round-to-nearest-even (as torch's ``.to(torch.float16)``)."""
    b = np.float32(x).view(np.uint32)
    sign = np.uint16((b >> np.uint32(16)) & np.uint32(0x8000))
    a = b & np.uint32(0x7FFFFFFF)
    if a > np.uint32(0x7F800000):  # NaN -> the canonical quiet NaN, as c10 does
        return np.uint16(sign | np.uint16(0x7E00))
    if a >= np.uint32(0x477FF000):  # >= 65520 (incl. inf) rounds to inf
        return np.uint16(sign | np.uint16(0x7C00))
    if a < np.uint32(0x38800000):  # below 2**-14: a float16 subnormal (or zero)
        # 0.5 has a float32 ulp of 2**-24, the float16 subnormal step: the hardware
        # addition rounds |x| to that grid (ties to even) and the mantissa bits are
        # the float16 mantissa (1024 = the smallest normal, also the right bits).
        shifted = np.float32(np.abs(np.float32(x)) + np.float32(0.5)).view(np.uint32)
        return np.uint16(sign | np.uint16(shifted - np.uint32(0x3F000000)))
    rebiased = a - np.uint32(0x38000000)  # exponent bias 127 -> 15
    rounded = rebiased + np.uint32(0xFFF) + ((rebiased >> np.uint32(13)) & np.uint32(1))
    return np.uint16(sign | np.uint16(rounded >> np.uint32(13)))


@njit
def fmax(a, b):
    """Maximum that propagates NaN, as torch.maximum (Python's max does not)."""
    if a != a or a > b:
        return a
    return b


@njit
def fmin(a, b):
    """Minimum that propagates NaN, as torch.minimum."""
    if a != a or a < b:
        return a
    return b
