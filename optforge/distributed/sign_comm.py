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


def check_sizes(numel: int, segments: int, process_group=None, device=None) -> None:
    """One small all-reduce: do all ranks send ``numel`` elements in ``segments`` pieces?

    The all-gather of ``exchange_signs`` needs equal sizes on every rank; ranks that
    differ here (different models) raise together instead of a mismatched all-gather
    failing or hanging. Sizes change only with the param groups, so callers run this
    on the first exchange and after a change, not every step.
    """
    group = default_group(process_group)
    # on the payload's device: NCCL takes only CUDA tensors, gloo takes both
    header = torch.tensor([numel, -numel, segments, -segments], dtype=torch.int64,
                          device=device)
    dist.all_reduce(header, op=dist.ReduceOp.MAX, group=group)
    high, low, s_high, s_low = header.tolist()
    if high != -low or s_high != -s_low:
        raise SignExchangeError(
            f"the ranks' optimizers hold different parameters ({-low} to {high} elements in "
            f"{-s_low} to {s_high} tensors; this rank {numel} in {segments}): every rank "
            "must build the same model and param groups")


def exchange_signs(local: torch.Tensor, how: str, process_group=None, nonfinite: bool = False,
                   present: torch.Tensor | None = None) -> torch.Tensor:
    """All-gather ``local``'s sign bits over the group and aggregate them (see ``aggregate``).

    One collective per step: each rank's payload starts with a flag byte (NaN/Inf in its
    values) and the packed ``present`` bits (one per segment of ``local``, e.g. "this
    parameter has a gradient"), so every rank sees every rank's flags and raises the
    same error when one has NaN/Inf or when the ``present`` bits differ, before anything
    is written. The sizes must already agree (``check_sizes``).
    """
    group = default_group(process_group)
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: expected one of {AGGREGATIONS}")
    present = torch.ones(0, dtype=torch.bool) if present is None else present.reshape(-1)
    n, segments = local.numel(), present.numel()
    head = 1 + packed_size(segments)
    payload = torch.empty(head + packed_size(n), dtype=torch.uint8, device=local.device)
    payload[0] = int(nonfinite)
    payload[1:head] = pack_signs(present.to(local.device, torch.float32) - 0.5)
    payload[head:] = pack_signs(local)
    world = dist.get_world_size(group)
    gathered = torch.empty(world, payload.numel(), dtype=torch.uint8, device=local.device)
    # torch >= 2.12 names it all_gather_single (all_gather_into_tensor warns there)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(gathered.view(-1), payload, group=group)
    if bool(gathered[:, 0].any()):
        raise NonFiniteSignsError("a rank has NaN or Inf in the values whose signs it would "
                                  "send (its gradients or momentum); no rank has stepped")
    masks = gathered[:, 1:head]
    if not bool((masks == masks[:1]).all()):
        bits = unpack_bits(masks, segments)
        differ = (bits != bits[:1]).any(dim=0).nonzero().flatten().tolist()
        raise SignExchangeError(
            f"segment(s) {differ} (the optimizer's parameters, in order) have a gradient on "
            "some ranks and not on others: every rank must step the same parameters")
    return aggregate(gathered[:, head:], n, how, dtype=local.dtype)
