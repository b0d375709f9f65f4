"""Stochastic rounding on the CPU: Philox-4x32-10 exactly as Triton draws it.

One counter-based generator serves every backend (see ``compiler/rounding.py`` for the
stream layout): the noise for element ``i`` of tensor ``tid`` of a bucket, stored into
slot ``salt`` at step ``step`` with the group's seed ``seed``, is the low 16 bits of word
``i % 4`` of ``philox4x32_10(key=(seed, tid), counter=(i // 4 low, i // 4 high, step,
salt))``. ``triton.language.random.philox_impl`` runs the same rounds (same multipliers
and key increments), ``kernels/philox_torch.py`` the same in torch integer ops; tests
check the three agree bit for bit, and with Random123's known answers.

Numba widens integers: every value is a uint64 holding 32 bits, masked after the adds
(the products of two 32-bit values fit in 64 bits, so the high word is a shift).
"""
from __future__ import annotations

import numpy as np
from numba import njit

ROUNDS = 10
MUL_A = np.uint64(0xD2511F53)  # Triton's PHILOX_ROUND_A
MUL_B = np.uint64(0xCD9E8D57)  # PHILOX_ROUND_B
KEY_A = np.uint64(0x9E3779B9)  # PHILOX_KEY_A (the golden ratio)
KEY_B = np.uint64(0xBB67AE85)  # PHILOX_KEY_B
LOW32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)


@njit
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on a 4x32-bit counter with a 2x32-bit key (all as uint64)."""
    c0, c1, c2, c3 = np.uint64(c0), np.uint64(c1), np.uint64(c2), np.uint64(c3)
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for _ in range(ROUNDS):
        product_b = MUL_B * c2
        product_a = MUL_A * c0
        c0 = (product_b >> SHIFT32) ^ c1 ^ k0
        c2 = (product_a >> SHIFT32) ^ c3 ^ k1
        c1 = product_b & LOW32
        c3 = product_a & LOW32
        k0 = (k0 + KEY_A) & LOW32
        k1 = (k1 + KEY_B) & LOW32
    return c0, c1, c2, c3


@njit
def round_keys(seed, tid):
    """The key of each of the ten rounds: (seed, tid) plus r times the Weyl constants."""
    keys = np.empty((ROUNDS, 2), dtype=np.uint64)
    k0, k1 = np.uint64(seed) & LOW32, np.uint64(tid) & LOW32
    for r in range(ROUNDS):
        keys[r, 0], keys[r, 1] = k0, k1
        k0 = (k0 + KEY_A) & LOW32
        k1 = (k1 + KEY_B) & LOW32
    return keys


@njit
def fill_noise16(out, first, count, seed, tid, step, salt):
    """The noise of elements ``first .. first + count - 1`` into ``out`` (uint16 or
    uint32, at least count + 7 long), element ``first + i`` at ``out[(first & 3) + i]``:
    whole quads from ``first // 4``. The keys are precomputed and the rounds have no branches, so LLVM
    vectorizes the quad loop (~2 ns a quad, against ~30 ns for one call per quad)."""
    keys = round_keys(seed, tid)
    c2_start, c3_start = np.uint64(step) & LOW32, np.uint64(salt) & LOW32
    first_quad = np.int64(first) >> 2
    for k in range(((np.int64(first) & 3) + count + 3) >> 2):
        q = np.uint64(first_quad + k)
        c0, c1, c2, c3 = q & LOW32, q >> SHIFT32, c2_start, c3_start
        for r in range(ROUNDS):
            product_b = MUL_B * c2
            product_a = MUL_A * c0
            c0 = (product_b >> SHIFT32) ^ c1 ^ keys[r, 0]
            c2 = (product_a >> SHIFT32) ^ c3 ^ keys[r, 1]
            c1 = product_b & LOW32
            c3 = product_a & LOW32
        out[4 * k] = np.uint32(c0 & np.uint64(0xFFFF))
        out[4 * k + 1] = np.uint32(c1 & np.uint64(0xFFFF))
        out[4 * k + 2] = np.uint32(c2 & np.uint64(0xFFFF))
        out[4 * k + 3] = np.uint32(c3 & np.uint64(0xFFFF))


@njit
def noise16(seed, tid, index, step, salt):
    """16 uniform random bits (as uint32) for element ``index``: see the module doc."""
    i = np.uint64(index)
    q = i >> np.uint64(2)
    w0, w1, w2, w3 = philox4x32(q & LOW32, q >> SHIFT32, np.uint64(step) & LOW32,
                                np.uint64(salt) & LOW32, np.uint64(seed) & LOW32,
                                np.uint64(tid) & LOW32)
    lane = i & np.uint64(3)
    word = w0 if lane == 0 else (w1 if lane == 1 else (w2 if lane == 2 else w3))
    return np.uint32(word & np.uint64(0xFFFF))


@njit
def f32_to_bf16_sr(x, noise):
    """float32 -> bfloat16 bits, rounded stochastically: 16 random bits added below the
    cut, then truncated, so E[result] = x; NaN -> 0x7FC0 as f32_to_bf16; infinities have
    zero low bits and never carry; a finite value may round up to inf only from within
    one bfloat16 step of the largest finite value, with the probability that keeps the
    mean (as the GPU backends do)."""
    f = np.float32(x)
    b = f.view(np.uint32)
    # in 32 bits: b + noise < 2**32 for every non-NaN b (at most 0xFF800000, -inf) and
    # noise < 2**16 (16 bits), so nothing is lost, and the loop vectorizes 16 lanes wide
    # rather than 8 of uint64; the NaN test is a float compare selecting the result
    rounded = np.uint16((b + np.uint32(noise)) >> np.uint32(16))
    return np.uint16(0x7FC0) if f != f else rounded


@njit
def bf16_stochastic_bits(x, seed, tid, step, salt):
    """A float32 array's elements rounded to bfloat16 stochastically: uint16 bits, with
    the noise a kernel storing ``x`` as tensor ``tid`` of slot ``salt`` would draw (for
    tests and for rounding a tensor the way the optimizer stores it)."""
    out = np.empty(x.size, dtype=np.uint16)
    flat = x.ravel()
    noise = np.empty(flat.size + 8, dtype=np.uint32)
    fill_noise16(noise, 0, flat.size, seed, tid, step, salt)
    for i in range(flat.size):
        out[i] = f32_to_bf16_sr(flat[i], noise[i])
    return out


U32_7FFFFFFF, U32_7F800000 = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000)
F16_INF_AT = np.uint32(0x47800000)  # 65536: from here (and inf) a float16 is inf
F16_NORMAL_AT = np.uint32(0x38800000)  # 2**-14: the smallest normal float16
F16_REBIAS = np.uint32(0x38000000)  # exponent bias 127 -> 15, in place
F16_MAX_SHIFT = 40  # below 2**-(24 + 16) the 16 noise bits cannot reach the first step


@njit
def f32_to_f16_sr(x, noise):
    """float32 -> float16 bits, rounded stochastically with 16 noise bits: normals cut 13
    mantissa bits (the top 13 noise bits added below the cut), subnormals keep whole
    2**-24 steps of the 24-bit significand (the noise scaled to the cut); the carry
    moves up to the next exponent (to inf past 65504, with the probability that keeps
    the mean). NaN -> 0x7E00 as f32_to_f16."""
    b = np.float32(x).view(np.uint32)
    sign = np.uint16((b >> np.uint32(16)) & np.uint32(0x8000))
    a = b & U32_7FFFFFFF
    if a > U32_7F800000:
        return np.uint16(sign | np.uint16(0x7E00))
    if a >= F16_INF_AT:
        return np.uint16(sign | np.uint16(0x7C00))
    if a >= F16_NORMAL_AT:
        return np.uint16(sign | np.uint16((a - F16_REBIAS + (np.uint32(noise) >> np.uint32(3)))
                                          >> np.uint32(13)))
    exponent = np.int64(a >> np.uint32(23))
    significand = np.uint64(a & np.uint32(0x7FFFFF)) | np.uint64(0x800000 if exponent else 0)
    shift = 126 - max(exponent, 1)  # value / 2**-24 = significand / 2**shift
    if shift >= F16_MAX_SHIFT:
        return sign
    scaled = (np.uint64(noise) << np.uint64(shift - 16)) if shift >= 16 \
        else (np.uint64(noise) >> np.uint64(16 - shift))
    return np.uint16(sign | np.uint16((significand + scaled) >> np.uint64(shift)))
