"""The one-lookup 8-bit quantizer (compiler/quant_packed.py, numba's q8_code_packed)
gives the codes of the nearest-map-value search, bit for bit.

Reference: ``np.searchsorted`` over the float32 midpoints (#{m < y}: the nearest map
value, ties to the lower code), independent of every table. The values: each midpoint and
its float32 neighbours (where a code changes), each bucket edge of the table key and its
neighbours (where a table word changes), +-0, +-1, tiny and subnormal values, and 2**20
random bit patterns in [-1, 1]; the numba quantizer also against the two-read one
(q8_code) on NaN and values beyond 1, which the search does not define.
"""
import numpy as np
import pytest
from numba import njit

from optforge.compiler.quant_format import BASE, WIDTH
from optforge.compiler.quant_map import midpoints
from optforge.compiler.quant_packed import code_of_packed, packed_table
from optforge.kernels.numba.quant_helpers import (MID_SIGNED, MID_UNSIGNED, PACKED_SIGNED,
                                                  PACKED_UNSIGNED, TAB_SIGNED, TAB_UNSIGNED,
                                                  q8_code, q8_code_packed)


@njit
def _packed_codes(ys, packed):
    out = np.empty(ys.size, np.uint8)
    for i in range(ys.size):
        out[i] = q8_code_packed(ys[i], packed)
    return out


@njit
def _two_read_codes(ys, mid, table):
    out = np.empty(ys.size, np.uint8)
    for i in range(ys.size):
        out[i] = q8_code(ys[i], mid, table)
    return out


def _neighbours(values: np.ndarray, steps: int = 2) -> np.ndarray:
    bits = values.astype(np.float32).view(np.int32).astype(np.int64)
    around = (bits[:, None] + np.arange(-steps, steps + 1)[None, :]).ravel()
    return around.astype(np.uint32).view(np.float32)


def _cases(signed: bool) -> np.ndarray:
    mids = np.array(midpoints(signed), np.float32)
    edges = np.array([(i + BASE) << 16 for i in range(WIDTH + 1)], np.uint32).view(np.float32)
    edges = np.concatenate([edges, -edges])
    special = np.array([0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1e-38, -1e-38, 2.0 ** -32,
                        -(2.0 ** -32)], np.float32)
    rng = np.random.default_rng(0)
    random = rng.integers(0, 0x3F800001, 1 << 20, dtype=np.uint32)
    random |= rng.integers(0, 2, random.size, dtype=np.uint32) << 31  # either sign
    ys = np.concatenate([_neighbours(mids), _neighbours(edges), special,
                         random.view(np.float32)])
    return ys[np.abs(ys) <= 1]


def _search(ys: np.ndarray, signed: bool) -> np.ndarray:
    return np.searchsorted(np.array(midpoints(signed), np.float32), ys, side="left")


@pytest.mark.parametrize("signed", [True, False])
def test_numba_packed_quantizer_is_the_search(signed):
    ys = _cases(signed)
    packed = PACKED_SIGNED if signed else PACKED_UNSIGNED
    np.testing.assert_array_equal(_packed_codes(ys, packed), _search(ys, signed))


@pytest.mark.parametrize("signed", [True, False])
def test_python_packed_quantizer_is_the_search(signed):
    ys = _cases(signed)[:: 97]  # (a slice: Python is slow)
    expected = _search(ys, signed)
    assert [code_of_packed(float(y), signed) for y in ys] == expected.tolist()


@pytest.mark.parametrize("signed", [True, False])
def test_outside_the_normalised_range_as_the_two_read_quantizer(signed):
    ys = np.array([np.nan, -np.nan, np.inf, -np.inf, 1.0000001, -1.0000001, 3e38, -3e38],
                  np.float32)
    mid, table = (MID_SIGNED, TAB_SIGNED) if signed else (MID_UNSIGNED, TAB_UNSIGNED)
    packed = PACKED_SIGNED if signed else PACKED_UNSIGNED
    np.testing.assert_array_equal(_packed_codes(ys, packed), _two_read_codes(ys, mid, table))


def test_a_word_per_bucket_and_only_inside_midpoints():
    for signed in (True, False):
        words = packed_table(signed)
        assert len(words) == 2 * WIDTH + 1
        # the clamped buckets (centre: |y| < 2**-32; ends: +-1) never take the step
        assert not any(words[k] & (1 << 16) for k in (0, WIDTH, 2 * WIDTH))
        assert all(0 <= w < 1 << 25 for w in words)
