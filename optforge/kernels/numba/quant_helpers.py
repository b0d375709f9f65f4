"""Numba helpers of 8-bit block-wise states (compiler/quant_format.py): a byte pointer,
the maps and tables as module constants, and the table quantizer.

``q8_code`` is the format's lookup, spelled on the float32 bits: two gathers and
``FIXUPS`` compares, no search loop, no data-dependent branch (LLVM keeps the inner loop
free of calls: everything here is inlined).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

from ...compiler.quant_format import BASE, WIDTH, code_table, padded_midpoints
from ...compiler.quant_map import dynamic_map
from ...compiler.quant_packed import CODE_SHIFT, packed_table
from .helpers import _pointer_intrinsic

ptr_u8 = _pointer_intrinsic(types.uint8)

MAP_SIGNED = np.array(dynamic_map(True), dtype=np.float32)
MAP_UNSIGNED = np.array(dynamic_map(False), dtype=np.float32)
MID_SIGNED = np.array(padded_midpoints(True), dtype=np.float32)
MID_UNSIGNED = np.array(padded_midpoints(False), dtype=np.float32)
TAB_SIGNED = np.array(code_table(True)[0], dtype=np.uint8)
TAB_UNSIGNED = np.array(code_table(False)[0], dtype=np.uint8)
# one int32 word per bucket: code and the low half of the midpoint (compiler/quant_packed.py)
PACKED_SIGNED = np.array(packed_table(True), dtype=np.int32)
PACKED_UNSIGNED = np.array(packed_table(False), dtype=np.int32)
FIXUPS = max(code_table(True)[1], code_table(False)[1])
if FIXUPS != 1:  # q8_code below does exactly one step: the tables must say it suffices
    raise AssertionError(f"8-bit code table needs {FIXUPS} fix-up steps; q8_code does 1")


@njit(inline="always")
def q8_code(y, mid, table):
    """The code of a normalised float32 value ``y`` (|y| <= 1): #{midpoints < y}."""
    bits = np.float32(y).view(np.uint32)
    i = min(max(np.int64((bits & np.uint32(0x7FFFFFFF)) >> np.uint32(16)) - BASE, 0), WIDTH)
    k = WIDTH - i if (bits >> np.uint32(31)) else WIDTH + i
    c = np.int64(table[k])
    c += np.int64(mid[c] < y)
    return np.uint8(c)


I32_BASE, I32_WIDTH, I32_SHIFT = np.int32(BASE), np.int32(WIDTH), np.int32(CODE_SHIFT)


@njit(inline="always")
def q8_code_packed(y, packed):
    """``q8_code``'s answer from ONE table read: the packed word of ``y``'s bucket
    (compiler/quant_packed.py). All in int32, so LLVM keeps 16 lanes per zmm and one
    gather (``q8_code`` reads two tables, one after the other: two gathers per value)."""
    bits = np.float32(y).view(np.int32)
    i = np.int32(min(max(np.int32(((bits & np.int32(0x7FFFFFFF)) >> np.int32(16)) - I32_BASE),
                         np.int32(0)), I32_WIDTH))
    word = packed[np.int32(I32_WIDTH - i) if bits < np.int32(0) else np.int32(I32_WIDTH + i)]
    flip = np.int32((bits >> np.int32(31)) & np.int32(0xFFFF))  # negatives: order reversed
    below = np.int32(((word & np.int32(0xFFFF)) ^ flip) < ((bits & np.int32(0xFFFF)) ^ flip))
    return np.uint8((word >> I32_SHIFT) + (below & (word >> np.int32(16))))
