"""Sign vectors packed 1 bit per element in torch: the torch backend's pack and count, and
the public packer (optforge.distributed).

A worker's sign vector is the bits ``c >= 0`` of one flat float tensor (+1 for a set bit,
-1 for a clear one). A bit has no third value, so an exact zero travels as +1: Lion's
``sign(0) = 0`` cannot be sent in one bit (Distributed Lion's vectors are binary, Liu et
al. 2024, Algorithm 1). The byte layout is compiler/packed_signs.py's: bit i (least
significant first) of byte k holds element 8 k + i, the last byte padded with clear bits.
Packing and unpacking are torch ops on the tensor's device, so a CUDA tensor never leaves
the GPU.

The torch backend's generated code calls ``store_signs`` (the pre-stage's store into a
``sign_bits`` buffer: flag byte and bits) and ``vote_values`` (the elementwise stage's
load of a ``sign_votes`` buffer); the numba and triton kernels pack and count in their
own generated code, bit for bit the same. The runtime counts with ``vote_totals`` where
a multi-stage plan reads a float32 result.

Every rank aggregates the same gathered bytes in the same order, so every rank gets the
same aggregate bit for bit (the "server" of the papers, run on each worker).
"""
from __future__ import annotations

import sys

import torch

from ..compiler.packed_signs import packed_size

AGGREGATIONS = ("vote", "average")

if sys.byteorder != "little":  # the int64 <-> 8-byte views below assume it (x86, ARM)
    raise ImportError("optforge packs sign bits on little-endian machines only")

# Bit i of a byte holds element 8k + i. Both directions work on int64 words of 8 bytes,
# which torch vectorizes well (shifting and summing over a trailing dim of 8 bytes took
# 12 ms to pack and 22 ms to aggregate 1.6M signs; these take ~1 ms each):
# pack: 8 bytes b_0..b_7 in {0, 1} as the word x = sum b_i 2^(8 i); x * _GATHER puts
# b_i at bit 56 + i and nothing else in the top byte (every b_i 2^(8 i + 8 j + 7 - j)
# lands on its own bit, so there are no carries; the product wraps in int64).
_GATHER = 0x0102040810204080
_TABLES: dict[torch.device, torch.Tensor] = {}


def _spread_table(device: torch.device) -> torch.Tensor:
    """unpack: byte value v -> the int64 word whose byte j is bit j of v (0 or 1)."""
    found = _TABLES.get(device)
    if found is None:
        words = [sum(((v >> j) & 1) << (8 * j) for j in range(8)) for v in range(256)]
        found = _TABLES[device] = torch.tensor(words, dtype=torch.int64, device=device)
    return found


def pack_signs(values: torch.Tensor) -> torch.Tensor:
    """uint8 tensor of ``packed_size(values.numel())`` bytes: bit set where ``values >= 0``.

    NaN compares false and is sent as -1; callers that must not vote on NaN check first
    (``exchange_signs`` does, on every rank together).
    """
    flat = values.reshape(-1)
    n = flat.numel()
    bits = torch.zeros(packed_size(n) * 8, dtype=torch.uint8, device=flat.device)
    torch.ge(flat, 0, out=bits[:n].view(torch.bool))
    return (((bits.view(torch.int64) * _GATHER) >> 56) & 0xFF).to(torch.uint8)


def _check_packed(packed: torch.Tensor, numel: int) -> None:
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed signs must be uint8, got {packed.dtype}")
    if packed.dim() == 0 or packed.shape[-1] != packed_size(numel):
        raise ValueError(f"{packed.shape[-1] if packed.dim() else 0} bytes hold "
                         f"{(packed.shape[-1] if packed.dim() else 0) * 8} bits, not {numel} "
                         f"({packed_size(numel)} bytes)")


def _spread(packed: torch.Tensor) -> torch.Tensor:
    """(..., nbytes) uint8 -> (..., nbytes) int64 words of 0/1 bytes, one per bit."""
    table = _spread_table(packed.device)
    # index_select: ~15x faster than table[packed.long()] on CPU
    return table.index_select(0, packed.reshape(-1).int()).view(packed.shape)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The first ``numel`` bits of ``packed`` (..., nbytes) as 0/1 uint8, shape (..., numel)."""
    _check_packed(packed, numel)
    return _spread(packed).view(torch.uint8)[..., :numel]


def unpack_signs(packed: torch.Tensor, numel: int, dtype=torch.float32) -> torch.Tensor:
    """The +1/-1 vector that ``pack_signs`` packed."""
    return unpack_bits(packed, numel).to(dtype) * 2 - 1


def vote_totals(gathered: torch.Tensor, numel: int) -> torch.Tensor:
    """The sum of N workers' +1/-1 votes per element, float32, from their packed sign
    vectors (a (N, nbytes) uint8 tensor): an exact integer count, so the result does not
    depend on the order in which the workers' vectors arrive."""
    if gathered.dim() != 2:
        raise ValueError(f"gathered signs: expected (workers, bytes), got {tuple(gathered.shape)}")
    _check_packed(gathered, numel)
    workers = gathered.shape[0]
    if workers == 0:
        raise ValueError("gathered signs: no worker's vector to aggregate")
    # the words of up to 255 workers add bytewise without a carry: each byte counts the
    # +1 votes of its element
    counts = None
    for chunk in gathered.split(255):
        part = _spread(chunk).sum(dim=0).view(torch.uint8)[:numel]
        counts = part.to(torch.float32) if counts is None else counts.add_(part)
    return counts.mul_(2).sub_(workers)


def aggregate(gathered: torch.Tensor, numel: int, how: str, dtype=torch.float32) -> torch.Tensor:
    """Aggregate the packed sign vectors of N workers (a (N, nbytes) uint8 tensor).

    ``"vote"``: the majority, sign(sum of signs) in {-1, 0, +1} (0 on a tie, possible
    for an even N). ``"average"``: the mean of the signs, (2 k - N) / N for k votes of
    +1. Both from the exact integer count of ``vote_totals``.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: expected one of {AGGREGATIONS}")
    total = vote_totals(gathered, numel)
    return (total.sign_() if how == "vote" else total.div_(gathered.shape[0])).to(dtype)


def store_signs(segment: torch.Tensor, values: torch.Tensor) -> None:
    """A pre-stage's store into one parameter's ``sign_bits`` segment (uint8, ``1 +
    packed_size(n)`` bytes): the bits of ``values >= 0`` after the flag byte, which is set
    (never cleared) where a value is NaN; no host synchronization."""
    flat = values.reshape(-1)
    segment[1:] = pack_signs(flat)
    segment[:1].bitwise_or_(torch.isnan(flat).any().view(1).to(torch.uint8))


def vote_values(gathered: torch.Tensor, like: torch.Tensor, op: str) -> torch.Tensor:
    """An elementwise stage's load of one parameter's ``sign_votes``: ``gathered`` is the
    (workers, segment) uint8 view of every worker's segment; float32 values shaped like
    ``like``: the sum of the +-1 votes (``"sum"``), that over the workers (``"mean"``),
    or its sign (``"vote"``)."""
    total = vote_totals(gathered[:, 1:], like.numel())
    if op == "vote":
        total.sign_()
    elif op == "mean":
        total.div_(gathered.shape[0])
    return total.view(like.shape)
