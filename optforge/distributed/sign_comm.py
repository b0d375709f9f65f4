"""Sign vectors on the wire: 1 bit per element, packed 8 to a byte, and their aggregation.

A worker's sign vector is the bits ``c >= 0`` of one flat float tensor (+1 for a set bit,
-1 for a clear one). A bit has no third value, so an exact zero travels as +1: Lion's
``sign(0) = 0`` cannot be sent in one bit (Distributed Lion's vectors are binary, Liu et
al. 2024, Algorithm 1). Packing and unpacking are torch ops on the tensor's device, so a
CUDA tensor never leaves the GPU; the collectives are torch.distributed's on the given
process group (gloo, NCCL...): we write no transport.

``exchange_signs`` is the whole communication of one step: every rank's packed bits are
all-gathered, and every rank aggregates the same bytes in the same order, so every rank
gets the same aggregate bit for bit (the "server" of the papers, run on each worker).
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist

AGGREGATIONS = ("vote", "average")

if sys.byteorder != "little":  # the int64 <-> 8-byte views below assume it (x86, ARM)
    raise ImportError("optforge.distributed packs sign bits on little-endian machines only")

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


def packed_size(numel: int) -> int:
    """Bytes that ``numel`` sign bits take (the last byte padded with clear bits)."""
    return (numel + 7) // 8


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


def aggregate(gathered: torch.Tensor, numel: int, how: str, dtype=torch.float32) -> torch.Tensor:
    """Aggregate the packed sign vectors of N workers (a (N, nbytes) uint8 tensor).

    ``"vote"``: the majority, sign(sum of signs) in {-1, 0, +1} (0 on a tie, possible
    for an even N). ``"average"``: the mean of the signs, (2 k - N) / N for k votes of
    +1. Both from an exact integer count, so the result does not depend on the order in
    which the workers' vectors arrive.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: expected one of {AGGREGATIONS}")
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
    total = counts.mul_(2).sub_(workers)  # sum of the +1/-1 votes: an exact integer
    return (total.sign_() if how == "vote" else total.div_(workers)).to(dtype)


class SignExchangeError(RuntimeError):
    """The ranks cannot exchange sign vectors this step (raised on every rank alike)."""


class NonFiniteSignsError(SignExchangeError):
    """Some rank's values are NaN or Inf: no sign vector was sent (on every rank alike)."""


def default_group(process_group):
    """``process_group`` or the default (WORLD) group; a clear error before ``init``."""
    if not dist.is_available() or not dist.is_initialized():
        raise SignExchangeError(
            "torch.distributed is not initialised: call torch.distributed."
            "init_process_group(...) (torchrun sets the environment it reads) before the "
            "first step, or supply the aggregated vote yourself with "
            "step(inputs={'vote': {param: tensor}})")
    return process_group if process_group is not None else dist.group.WORLD


def exchange_signs(local: torch.Tensor, how: str, process_group=None,
                   nonfinite: bool = False) -> torch.Tensor:
    """All-gather ``local``'s sign bits over the group and aggregate them (see ``aggregate``).

    Before the payload, one small all-reduce compares the ranks' element counts and
    their non-finite flags, so that a rank with other parameters (or NaN gradients)
    makes *every* rank raise the same error instead of a mismatched all-gather hanging
    or a NaN voting -1. Nothing is written before that check.
    """
    group = default_group(process_group)
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: expected one of {AGGREGATIONS}")
    n = local.numel()
    # max of (n, -n) gives max and -min of the counts: equal iff max == min
    # on the payload's device: NCCL takes only CUDA tensors, gloo takes both
    header = torch.tensor([n, -n, int(nonfinite)], dtype=torch.int64, device=local.device)
    dist.all_reduce(header, op=dist.ReduceOp.MAX, group=group)
    high, low, bad = (int(x) for x in header.tolist())
    if high != -low:
        raise SignExchangeError(
            f"ranks step different numbers of elements ({-low} to {high}; this rank "
            f"{n}): every rank must step the same parameters with gradients, in the same "
            "order (a parameter without a gradient on one rank only?)")
    if bad:
        raise NonFiniteSignsError("a rank has NaN or Inf in the values whose signs it would "
                                "send (its gradients or momentum); no rank has stepped")
    if n == 0:  # no rank has a gradient: nothing to send
        return local.new_empty(0)
    packed = pack_signs(local)
    world = dist.get_world_size(group)
    gathered = torch.empty(world * packed.numel(), dtype=torch.uint8, device=packed.device)
    # torch >= 2.12 names it all_gather_single (all_gather_into_tensor warns there)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(gathered, packed, group=group)
    return aggregate(gathered.view(world, -1), n, how, dtype=local.dtype)
