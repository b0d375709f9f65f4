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

import torch
import torch.distributed as dist

AGGREGATIONS = ("vote", "average")

# bit i of a byte holds element 8k + i (little-endian bit order inside a byte)
_SHIFTS_CACHE: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    found = _SHIFTS_CACHE.get(device)
    if found is None:
        found = _SHIFTS_CACHE[device] = torch.arange(8, dtype=torch.uint8, device=device)
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
    bits[:n] = flat >= 0
    return (bits.view(-1, 8) << _shifts(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The first ``numel`` bits of ``packed`` (..., nbytes) as 0/1 uint8, shape (..., numel)."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed signs must be uint8, got {packed.dtype}")
    if packed.shape[-1] != packed_size(numel):
        raise ValueError(f"{packed.shape[-1]} bytes hold {packed.shape[-1] * 8} bits, "
                         f"not {numel} ({packed_size(numel)} bytes)")
    bits = (packed.unsqueeze(-1) >> _shifts(packed.device)) & 1
    return bits.reshape(*packed.shape[:-1], -1)[..., :numel]


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
    workers = gathered.shape[0]
    if gathered.dim() != 2 or gathered.dtype != torch.uint8 or \
            gathered.shape[1] != packed_size(numel):
        raise ValueError(f"gathered signs: expected (workers, {packed_size(numel)}) uint8, got "
                         f"{tuple(gathered.shape)} {gathered.dtype}")
    # count the +1 bits over workers on the contiguous (workers, bytes, 8) layout, then
    # drop the padding; int16: exact up to 32767 workers
    bits = (gathered.unsqueeze(-1) >> _shifts(gathered.device)) & 1
    ones = bits.sum(dim=0, dtype=torch.int16).reshape(-1)[:numel]
    total = ones * 2 - workers  # sum of +1/-1 votes
    if how == "vote":
        return torch.sign(total).to(dtype)
    return total.to(dtype) / workers


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
    header = torch.tensor([n, -n, int(nonfinite)], dtype=torch.int64)
    if dist.get_backend(group) == "nccl":
        header = header.to(local.device)
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
