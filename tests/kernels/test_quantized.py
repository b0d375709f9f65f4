"""The 8-bit block-wise state format: the dynamic map and torch's quantize/dequantize.

References: the map built here again from Dettmers et al. 2022's description (decade k of 7
split into equal steps of [0.1, 1], midpoints, 2**k values a sign, 2**(k+1) unsigned, plus 0
and 1), a brute-force nearest-code search, and bitsandbytes' own map and block-wise
quantization where it imports.
"""
import numpy as np
import pytest
import torch

from optforge.compiler.quant_map import code_of, dynamic_map, midpoints
from optforge.kernels.quantized import (blocks, dequantize_blockwise, qmap,
                                        quantize_blockwise)


def paper_map(signed: bool) -> np.ndarray:
    values = [0.0, 1.0]
    for k in range(7):
        n = 2 ** k if signed else 2 ** (k + 1)
        edges = np.linspace(0.1, 1.0, n + 1)
        mids = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (k - 6)
        values += list(mids) + (list(-mids) if signed else [])
    return np.sort(np.array(values, dtype=np.float32))


def bnb():
    try:
        import bitsandbytes.functional as F
    except Exception as e:  # not installable on this machine: the plain references stand
        pytest.skip(f"bitsandbytes does not import here: {e}")
    return F


@pytest.mark.parametrize("signed", [True, False])
def test_map_is_the_papers_dynamic_tree(signed):
    ours = np.array(dynamic_map(signed), dtype=np.float32)
    assert ours.shape == (256,) and np.all(np.diff(ours) > 0)
    assert ours[-1] == 1.0 and 0.0 in ours
    assert (ours.min() < -0.99) if signed else (ours.min() == 0.0)
    np.testing.assert_allclose(ours, paper_map(signed), rtol=2e-7, atol=0)


@pytest.mark.parametrize("signed", [True, False])
def test_map_matches_bitsandbytes(signed):
    ref = bnb().create_dynamic_map(signed=signed).numpy()
    # the same numbers; bitsandbytes rounds its intermediate steps to float32 (one ulp)
    np.testing.assert_allclose(np.array(dynamic_map(signed), np.float32), ref, rtol=2e-7, atol=0)


@pytest.mark.parametrize("signed", [True, False])
def test_code_is_the_nearest_map_value(signed):
    table = np.array(dynamic_map(signed), dtype=np.float64)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1 if signed else 0, 1, 3000)
    xs = np.concatenate([xs, 10.0 ** rng.uniform(-8, 0, 1000), table, [0.0, 1.0]])
    for x in xs:
        c = code_of(float(np.float32(x)), signed)
        best = np.abs(table - np.float32(x)).min()
        assert abs(table[c] - np.float32(x)) <= best + 1e-12, (x, c)
    assert len(midpoints(signed)) == 255


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("shape", [(4096,), (33, 129), (7,), (2, 3, 300)])
def test_torch_quantize_round_trip(signed, shape):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen)
    x = x if signed else x.abs() * torch.rand(shape, generator=gen) ** 4  # many decades
    codes, absmax = quantize_blockwise(x, signed, block=256)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert absmax.shape == (blocks(x.numel(), 256),)
    y = dequantize_blockwise(codes, absmax, signed, block=256)
    # each element lands on its nearest map value: brute force, per block
    table = qmap(signed).double()
    flat, scale = x.reshape(-1).double(), absmax.double().repeat_interleave(256)[: x.numel()]
    nearest = (table[None, :] - (flat / scale)[:, None]).abs().min(dim=1).values
    chosen = (table[codes.reshape(-1).long()] - flat / scale).abs()
    assert torch.all(chosen <= nearest + 1e-7)
    assert torch.equal(y.reshape(-1), (qmap(signed)[codes.reshape(-1).long()]
                                       * absmax.repeat_interleave(256)[: x.numel()]))


def test_torch_quantize_matches_bitsandbytes_blockwise():
    F = bnb()
    x = torch.randn(8192, generator=torch.Generator().manual_seed(0))
    theirs, state = F.quantize_blockwise(x, blocksize=256)
    codes, absmax = quantize_blockwise(x, signed=True, block=256)
    torch.testing.assert_close(absmax, state.absmax, rtol=0, atol=0)
    # bitsandbytes' CPU search may pick the other neighbour right at a decision boundary;
    # elsewhere the codes are the same, and ours is never the farther one
    table = qmap(True).double()
    n = (x.view(-1, 256) / absmax[:, None]).reshape(-1).double()
    differ = codes != theirs
    assert differ.float().mean() < 0.01
    assert torch.all((table[codes.long()] - n).abs() <= (table[theirs.long()] - n).abs())
    assert torch.all((codes.int() - theirs.int()).abs() <= 1)
    deq = F.dequantize_blockwise(theirs, state)
    # the same codes read back alike, to the one float32 ulp by which the two maps differ
    torch.testing.assert_close(dequantize_blockwise(theirs, absmax, True), deq, rtol=2.5e-7,
                               atol=0)


def test_zero_block_and_bad_input():
    x = torch.zeros(600)
    x[300:] = torch.linspace(0, 2, 300)
    codes, absmax = quantize_blockwise(x, signed=False)
    assert absmax[0] == 0 and torch.all(dequantize_blockwise(codes, absmax, False)[:256] == 0)
    with pytest.raises(ValueError, match="negative"):
        quantize_blockwise(-x, signed=False)
    with pytest.raises(ValueError, match="needs 3 absmax scales, got 2"):
        dequantize_blockwise(codes, absmax[:2], signed=False)
