"""The one-lookup spelling of the 8-bit quantizer (quant_format.py) for CPU kernels.

quant_format's quantizer finds a code with two DEPENDENT table reads per value: the
bucket's lower-bound code ``c = table[key(y)]``, then its midpoint ``mid[c]`` for the one
fix-up compare. Vectorized, each read is a gather, and on the AMD Zen 4 cores this was
measured on a 16-lane gather costs about 20 cycles (1.2 per value): the two made
requantization ~4.3 cycles per value, three quarters of an 8-bit AdamW step.

Here one 32-bit word per bucket holds both: the fix-up step needs only ``mid[c]``'s
low 16 bits, because a midpoint that matters for a bucket lies IN that bucket, so its
sign, exponent and top 7 mantissa bits are the bucket's, which are also ``y``'s. For
values of one sign with equal high halves, ``m < y`` is an integer compare of the low
halves (flipped for negatives, whose order the bits reverse). Word layout::

    code << 17 | has_midpoint << 16 | low 16 bits of the midpoint

``has_midpoint`` is 0 where no midpoint lies in the bucket (the step is never taken):
always so for the buckets ``key`` clamps (|y| below 2**-32, and |y| = 1), where ``y``'s
high half is not the bucket's. The codes are the search's (``code_of``), bit for bit:
checked here against quant_format's table for every bucket, and in the tests against
the search for every float32 in [-1, 1].
"""
from __future__ import annotations

import functools
import struct

from .quant_format import BASE, WIDTH, code_table, padded_midpoints

CODE_SHIFT, HAS_MID = 17, 1 << 16


def _bits(x: float) -> int:
    return struct.unpack("I", struct.pack("f", x))[0]


def _high_half(k: int) -> int | None:
    """The high 16 bits every value of bucket ``k`` shares, None for a clamped bucket."""
    i = abs(k - WIDTH)
    if i == 0 or i == WIDTH:
        return None
    return (i + BASE) | (0x8000 if k < WIDTH else 0)


@functools.lru_cache(maxsize=None)
def packed_table(signed: bool) -> tuple[int, ...]:
    """One word per bucket of ``quant_format.key`` (see the module docstring)."""
    table, fixups = code_table(signed)
    if fixups != 1:
        raise AssertionError(f"8-bit code table needs {fixups} fix-up steps, packed words 1")
    mids = padded_midpoints(signed)
    words = []
    for k, code in enumerate(table):
        mid_bits = _bits(mids[code]) if mids[code] != float("inf") else None
        high = _high_half(k)
        inside = mid_bits is not None and high is not None and mid_bits >> 16 == high
        if k == WIDTH and -_CENTRE < mids[code] < _CENTRE:
            raise AssertionError("8-bit code table: a midpoint below 2**-32 in magnitude")
        words.append(code << CODE_SHIFT | (HAS_MID | mid_bits & 0xFFFF if inside else 0))
    # (the end buckets hold only y = +-1, normalised values being at most 1 in magnitude:
    # +1's code is the last, with mid = inf; -1 is below every midpoint)
    return tuple(words)


_CENTRE = struct.unpack("f", struct.pack("I", (1 + BASE) << 16))[0]  # the centre bucket's |y|


def code_of_packed(y: float, signed: bool) -> int:
    """The code of a normalised float32 value by one packed word (as the kernels do)."""
    bits = _bits(y)
    i = min(max(((bits & 0x7FFFFFFF) >> 16) - BASE, 0), WIDTH)
    k = WIDTH - i if bits >> 31 else WIDTH + i
    word = packed_table(signed)[k]
    flip = 0xFFFF if bits >> 31 else 0
    step = ((word & 0xFFFF) ^ flip) < ((bits & 0xFFFF) ^ flip) and bool(word & HAS_MID)
    return (word >> CODE_SHIFT) + int(step)
