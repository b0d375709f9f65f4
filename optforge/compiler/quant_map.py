"""The 8-bit dynamic quantization maps of block-wise quantized optimizer states.

Dettmers et al. 2022 ("8-bit Optimizers via Block-wise Quantization") store a state as one
byte per value plus one float32 scale per block: a value ``x`` of block ``b`` is stored as the
code ``c`` whose map entry ``MAP[c]`` is nearest to ``x / absmax(b)``, and read back as
``MAP[c] * absmax(b)``. The map is their *dynamic tree* data type: after an optional sign
bit, the number of leading zero bits says which decade the value lies in (1e-7..1e-6 up to
0.1..1) and the bits after the first one split that decade linearly. Small magnitudes (an
Adam second moment spans many decades) thus keep their relative precision, where a linear
map would round most of them to zero.

Here each decade ``k`` (0 = the smallest) holds ``n_k`` values: the midpoints of ``n_k``
equal steps of [0.1, 1], scaled by ``10 ** (k - 6)``. The signed map gives decade ``k``
``2**k`` values of each sign; the unsigned map (for non-negative states such as second
moments) spends the sign bit on precision, ``2**(k + 1)`` values. Both add 0 and 1 (the
block's absmax itself): 7 decades, 127 * 2 + 2 = 254 + 2 = 256 codes.

Pure Python: the compiler embeds the table in generated kernels, the runtime turns it into
a tensor. Values are rounded to float32, the precision every backend holds them in.
"""
from __future__ import annotations

import functools
import struct

DECADES = 7  # 1e-7 .. 1: below a block's absmax / 1e7 a value rounds to 0
CODES = 256


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _decade(k: int, count: int) -> list[float]:
    """``count`` midpoints of equal steps of [0.1, 1], scaled into decade ``k``."""
    step = 0.9 / count
    scale = 10.0 ** (k - (DECADES - 1))
    return [scale * (0.1 + step * (i + 0.5)) for i in range(count)]


@functools.lru_cache(maxsize=None)
def dynamic_map(signed: bool) -> tuple[float, ...]:
    """The 256 map values, ascending, as float32-representable Python floats."""
    values = [0.0, 1.0]
    for k in range(DECADES):
        positive = _decade(k, 2 ** k if signed else 2 ** (k + 1))
        values += positive
        if signed:
            values += [-v for v in positive]
    if len(values) != CODES:  # the construction above is the format: guard against edits
        raise AssertionError(f"dynamic map has {len(values)} values, not {CODES}")
    return tuple(sorted(_float32(v) for v in values))


@functools.lru_cache(maxsize=None)
def midpoints(signed: bool) -> tuple[float, ...]:
    """The 255 decision boundaries between neighbouring codes (float32): a normalised value
    ``x`` gets the code ``c = #{m in midpoints : m < x}``, i.e. its nearest map value, ties
    going to the lower code. Kernels find ``c`` by an 8-step binary search over these."""
    table = dynamic_map(signed)
    return tuple(_float32((a + b) / 2) for a, b in zip(table, table[1:]))


def code_of(x: float, signed: bool) -> int:
    """The code of a normalised value (|x| <= 1), by the same binary search the kernels do."""
    bounds = midpoints(signed)
    lo, hi = 0, len(bounds)  # the answer lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if bounds[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
