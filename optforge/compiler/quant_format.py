"""8-bit block-wise storage of a state: its format, and the quantizer every backend spells.

A state stored in 8 bits (``state_dtype="int8"``) is ONE uint8 tensor per parameter,
packed as ``[codes | scales]``: the code of element ``e`` at byte ``e`` (the codes padded
to whole blocks), then one float32 absmax per block of ``block`` elements at byte
``blocks * block``. One tensor per state keeps everything that moves states around
(buckets, checks, ``optimizer.state``) unchanged; checkpoints split it into codes and
scales (runtime/quantized_states.py).

The plan carries the format as the state's storage dtype, a string such as ``"q8u256"``
(unsigned map, blocks of 256) or ``"q8s256"`` (signed map): structural, so part of the
compile key, and a dtype no non-quantizing printer knows.

**The quantizer.** A value ``x`` of block ``b`` gets the code ``#{m in midpoints : m <
x / absmax(b)}`` (its nearest map value, ties to the lower code; quant_map.py). Instead
of an 8-step binary search over the 255 midpoints, kernels look the code up from the
float32 bits of ``y = x / absmax``: ``KEY`` (below) maps ``y`` monotonically to one of
``2 * WIDTH + 1`` buckets (sign, exponent and the top 7 mantissa bits), a table gives
a lower bound of the codes in that bucket, and ``fixups`` branch-free steps ``c +=
mid[c] < y`` finish it (each step adds one exactly while ``c`` is below the answer,
because the midpoints are sorted). Two table reads and two compares per value, all integer
and float32 operations every backend has, and the same answer as the search (the numba
kernel packs both reads into one: quant_packed.py).
"""
from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass

from .quant_map import midpoints

FORMAT = re.compile(r"^q8([su])(\d+)$")
BLOCKS = (64, 128, 256, 512, 1024, 2048, 4096)  # powers of two: triton reshapes by them
DEFAULT_BLOCK = 256
SMALL_TENSOR = 4096  # below this many elements a state stays float32, as bitsandbytes does
BASE = (127 - 32) << 7  # bits >> 16 of 2**-32: every |y| below it shares one bucket
WIDTH = (0x3F80 - BASE)  # bits >> 16 of 1.0, minus BASE: |y| <= 1 gives 0 .. WIDTH


@dataclass(frozen=True)
class QuantFormat:
    signed: bool
    block: int = DEFAULT_BLOCK

    @property
    def dtype(self) -> str:
        return f"q8{'s' if self.signed else 'u'}{self.block}"

    def blocks(self, numel: int) -> int:
        return -(-numel // self.block)

    def scale_offset(self, numel: int) -> int:
        """Byte offset of the first scale in the packed tensor."""
        return self.blocks(numel) * self.block

    def packed_bytes(self, numel: int) -> int:
        return self.blocks(numel) * (self.block + 4)


def parse(dtype) -> QuantFormat | None:
    """The format a storage dtype string names, or None for any other dtype."""
    found = FORMAT.match(str(dtype)) if dtype is not None else None
    if found is None:
        return None
    return QuantFormat(found.group(1) == "s", int(found.group(2)))


def is_quantized(dtype) -> bool:
    return parse(dtype) is not None


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _from_bits(bits: int) -> float:
    return struct.unpack("f", struct.pack("I", bits))[0]


def key(y: float) -> int:
    """The bucket of a normalised value: the kernels' integer steps, in Python."""
    bits = struct.unpack("I", struct.pack("f", y))[0]
    i = min(max(((bits & 0x7FFFFFFF) >> 16) - BASE, 0), WIDTH)
    return WIDTH - i if bits >> 31 else WIDTH + i


def _bucket_bounds(k: int) -> tuple[float, bool, float]:
    """(lowest value, whether it belongs to the bucket, highest value) of bucket ``k``."""
    def edge(i):  # the smallest |y| with index i
        return _from_bits((i + BASE) << 16)
    i = abs(k - WIDTH)
    if k == WIDTH:
        return -edge(1), False, edge(1)
    if k > WIDTH:
        return edge(i), True, (1.0 if i == WIDTH else edge(i + 1))
    if i == WIDTH:  # -1 (and anything clamped below it)
        return float("-inf"), True, -1.0
    return -edge(i + 1), False, -edge(i)


@functools.lru_cache(maxsize=None)
def code_table(signed: bool) -> tuple[tuple[int, ...], int]:
    """(lower bound of the code per bucket, the fix-up steps that always suffice)."""
    mids = midpoints(signed)
    table, fixups = [], 0
    for k in range(2 * WIDTH + 1):
        low, inclusive, high = _bucket_bounds(k)
        start = sum(m < low if inclusive else m <= low for m in mids)
        table.append(start)
        fixups = max(fixups, sum(m < high for m in mids) - start)
    return tuple(table), fixups


@functools.lru_cache(maxsize=None)
def padded_midpoints(signed: bool) -> tuple[float, ...]:
    """The 255 midpoints and +inf: ``mid[c]`` is defined for every code ``c``."""
    return (*midpoints(signed), float("inf"))


def code_of_value(y: float, signed: bool) -> int:
    """The code of a normalised float32 value by table and fix-ups (as the kernels do)."""
    table, fixups = code_table(signed)
    mids = padded_midpoints(signed)
    c = table[key(_f32(y))]
    for _ in range(fixups):
        c += mids[c] < y
    return c
