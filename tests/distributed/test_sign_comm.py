"""Sign vectors packed 1 bit per element: exact round trips at awkward sizes, the byte
layout, and aggregation against a plain float computation of the papers' server."""
from __future__ import annotations

import pytest
import torch

from optforge.distributed import aggregate, pack_signs, packed_size, unpack_bits, unpack_signs

SIZES = [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1001, 4097]


def _expected(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.reshape(-1) >= 0, 1.0, -1.0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_round_trip_is_exact(n, dtype):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen).to(dtype)
    x[::3] = 0.0  # zeros (and a negative zero below) are +1: a bit has no third value
    x[1::7] = -0.0
    packed = pack_signs(x)
    assert packed.dtype == torch.uint8 and packed.shape == (packed_size(n),)
    assert packed.numel() * 8 - n < 8  # at most 7 bits of padding
    assert torch.equal(unpack_signs(packed, n), _expected(x))
    assert torch.equal(unpack_signs(packed, n, torch.float64), _expected(x).double())


def test_shapes_are_flattened_in_row_major_order():
    x = torch.randn(3, 5, 7)
    assert torch.equal(unpack_signs(pack_signs(x), x.numel()), _expected(x))
    assert torch.equal(pack_signs(x), pack_signs(x.reshape(-1)))
    t = x.transpose(0, 2)  # non-contiguous: its own (logical) order
    assert torch.equal(unpack_signs(pack_signs(t), t.numel()), _expected(t))


def test_byte_layout_is_little_endian_bits_and_padding_is_clear():
    # elements 0..8: + - - + + + + - | +  -> bits 1,0,0,1,1,1,1,0 = 0b01111001 = 121
    x = torch.tensor([1., -1, -1, 1, 1, 1, 1, -1, 1])
    assert pack_signs(x).tolist() == [121, 1]  # the second byte's 7 padding bits are 0
    assert pack_signs(torch.ones(8)).tolist() == [255]
    assert pack_signs(-torch.ones(8)).tolist() == [0]


def test_every_byte_value_round_trips():
    # pack multiplies int64 words with a wrapping product: check all 256 bit patterns
    values = torch.arange(256)
    bits = (values.unsqueeze(1) >> torch.arange(8)) & 1  # (256, 8): element 8k+i = bit i of k
    signs = bits.float() * 2 - 1
    packed = pack_signs(signs)
    assert torch.equal(packed, values.to(torch.uint8))
    assert torch.equal(unpack_bits(packed, 2048), bits.reshape(-1).to(torch.uint8))
    # the same bytes as (workers, bytes): worker k sent byte k for 8 elements
    ones = bits.sum(0).float()  # +1 votes per element over 256 workers
    assert torch.equal(aggregate(packed.view(256, 1), 8, "vote"), torch.sign(ones * 2 - 256))
    assert torch.equal(aggregate(packed.view(256, 1), 8, "average"), (ones * 2 - 256) / 256)


def test_empty():
    assert pack_signs(torch.empty(0)).numel() == 0
    assert unpack_signs(pack_signs(torch.empty(0)), 0).numel() == 0


def test_nan_is_sent_as_minus_one():
    # documented: exchange_signs refuses NaN before packing; pack itself just compares
    assert unpack_signs(pack_signs(torch.tensor([float("nan"), 1.0])), 2).tolist() == [-1, 1]


def test_unpack_refuses_a_wrong_length_or_dtype():
    with pytest.raises(ValueError, match="2 bytes hold 16 bits, not 17"):
        unpack_bits(torch.zeros(2, dtype=torch.uint8), 17)
    with pytest.raises(TypeError, match="uint8"):
        unpack_bits(torch.zeros(2, dtype=torch.int8), 16)
    with pytest.raises(ValueError, match="expected \\(workers, bytes\\)"):
        aggregate(torch.zeros(2, dtype=torch.uint8), 16, "vote")


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 8, 300])
@pytest.mark.parametrize("n", [1, 13, 64, 1001])
def test_aggregate_is_the_papers_server(workers, n):
    gen = torch.Generator().manual_seed(10 * workers + n)
    values = [torch.randn(n, generator=gen) for _ in range(workers)]
    gathered = torch.stack([pack_signs(v) for v in values])
    total = torch.stack([_expected(v) for v in values]).sum(0)
    vote = aggregate(gathered, n, "vote")
    assert torch.equal(vote, torch.sign(total))
    assert torch.equal(aggregate(gathered, n, "average"), total / workers)
    if workers % 2 == 0 and n >= 64:  # ties really happen and give 0
        assert (vote == 0).any()
    assert aggregate(gathered, n, "vote", torch.bfloat16).dtype == torch.bfloat16


def test_aggregate_refuses_an_unknown_rule():
    with pytest.raises(ValueError, match="'median'"):
        aggregate(torch.zeros(2, 1, dtype=torch.uint8), 3, "median")
