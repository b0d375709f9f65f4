"""The bit-level storage conversions of the numba backend against torch's own casts.

Numba has no bfloat16 and no CPU float16 arithmetic, so kernels round by hand
(kernels/numba/helpers.py); torch's ``.to(dtype)`` is the reference: round to
nearest, ties to even, overflow to inf. NaN payloads differ between torch's code
paths (0x7FC0 in c10's scalar code, 0xFFFF from the vectorized cast here), so NaN
is checked as NaN, not by bits.
"""
import numpy as np
import pytest
import torch
from numba import njit

from optforge.kernels.numba.helpers import bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16


@njit
def _map_to_bits(fn, x):
    out = np.empty(x.shape[0], np.uint16)
    for i in range(x.shape[0]):
        out[i] = fn(x[i])
    return out


@njit
def _map_to_f32(fn, bits):
    out = np.empty(bits.shape[0], np.float32)
    for i in range(bits.shape[0]):
        out[i] = fn(bits[i])
    return out


def _f32(bits):
    return torch.tensor(np.array(bits, dtype=np.uint32).view(np.float32))


def _edge_values():
    fmax = np.finfo(np.float32).max
    specials = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, fmax, -fmax,
                np.finfo(np.float32).tiny, 1e-45, -1e-45, 65504.0, 65519.99, 65520.0, -65520.0,
                6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08, 8.940697e-08,
                3.3895314e38, 3.3961776e38]  # around the bfloat16 maximum
    ties = [0x3F808000, 0x3F818000, 0xBF808000, 0x3F80_8001, 0x3F80_7FFF,  # bf16 ties / near
            0x7F7F8000, 0x7F7FFFFF, 0x00008000, 0x00018000,  # tie to inf, subnormal ties
            0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,  # float16 ties / near (1 + 2**-11)
            0x33000000, 0x33000001, 0x33C00000, 0x387FE000, 0x387FF000]  # f16 subnormal ties
    gen = torch.Generator().manual_seed(0)
    rand = torch.randint(0, 2 ** 32, (200_000,), generator=gen, dtype=torch.int64)
    scaled = torch.randn(100_000, generator=gen) * torch.exp2(
        torch.randint(-30, 17, (100_000,), generator=gen).float())
    return torch.cat([torch.tensor(specials, dtype=torch.float32), _f32(ties),
                      _f32(rand.numpy().astype(np.uint32)), scaled.float()])


@pytest.mark.parametrize("fn, dtype", [(f32_to_bf16, torch.bfloat16), (f32_to_f16, torch.float16)],
                         ids=["bfloat16", "float16"])
def test_round_to_nearest_even_matches_torch(fn, dtype):
    x = _edge_values()
    ours = torch.from_numpy(_map_to_bits(fn, x.numpy()).view(np.int16)).view(dtype)
    ref = x.to(dtype)
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours), nan)
    assert torch.equal(ours[~nan].view(torch.int16), ref[~nan].view(torch.int16))


@pytest.mark.parametrize("fn, dtype", [(bf16_to_f32, torch.bfloat16), (f16_to_f32, torch.float16)],
                         ids=["bfloat16", "float16"])
def test_widening_is_exact_for_every_bit_pattern(fn, dtype):
    bits = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    ours = torch.from_numpy(_map_to_f32(fn, bits))
    ref = torch.from_numpy(bits.view(np.int16)).view(dtype).float()
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours), nan)
    assert torch.equal(ours[~nan].view(torch.int32), ref[~nan].view(torch.int32))
