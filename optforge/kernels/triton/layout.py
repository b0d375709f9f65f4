"""How one launch reaches every tensor of a bucket without touching the user's storage.

Parameters belong to the user (FSDP shards, tied weights, references they hold), so
the tensors are never concatenated nor re-pointed. Instead a launch gets:

* an address table: int64 ``data_ptr()`` values, one row per tensor role (p, g, each
  state) and one column per tensor, cast to typed pointers inside the kernel;
* a block map: for each program, the tensor it works on and its first element, so
  a 1-element bias and a 100M-element embedding share one grid with no idle programs
  beyond each tensor's last partial block.

Both are small (8 bytes per tensor and role; 12 bytes per block of >= 1024 elements)
and cached: the block map depends only on the sizes and BLOCK_SIZE; the address
table is rebuilt only when an address changes (gradients re-allocated, say).
"""
from __future__ import annotations

import torch

from ...compiler.packed_signs import PACKED
from ..packed_signs import check_packed
from ..raw_memory import check_extent, refuse_wrapped


class LayoutError(ValueError):
    """A bucket the triton backend cannot run as given (strides, devices, dtypes)."""


def check_bucket(roles: list[tuple[str, list[torch.Tensor], torch.dtype]],
                 device: torch.device, numels: tuple[int, ...], labels=None) -> None:
    """Every tensor a plain (not wrapper) tensor of its parameter's numel (``numels``),
    contiguous, inside its own storage, on ``device``, with its role's storage dtype;
    else name it. ``labels[i]`` names parameter i in messages."""
    for role, tensors, dtype in roles:
        for i, t in enumerate(tensors):
            label = labels[i] if labels else f"parameter {i}"
            where = f"triton backend: tensor {role!r} of {label}"
            refuse_wrapped(t, where, "triton")  # a DTensor's numel is not its shard's
            if t.device != device:
                raise LayoutError(f"{where} is on {t.device}, the bucket on {device}")
            if t.dtype != dtype:
                raise LayoutError(f"{where} is {t.dtype}; the kernel was built for {dtype}")
            if t.numel() != numels[i]:
                # the kernel reads numels[i] elements from every role's address
                raise LayoutError(f"{where} has {t.numel()} elements (shape "
                                  f"{tuple(t.shape)}), its parameter {numels[i]}")
            if not t.is_contiguous():
                # a strided view would be read as if dense: wrong values, so refuse it
                raise LayoutError(f"{where} is not contiguous (shape {tuple(t.shape)}, "
                                  f"strides {t.stride()}); the triton backend needs "
                                  "contiguous tensors (use .contiguous() or backend='torch')")
            check_extent(t, where, "triton")


def check_roles(dtypes: dict[str, str], roles, by_role, params, labels,
                plain: bool = True) -> tuple[int, ...]:
    """``check_bucket`` for the tensors of ``roles`` (``plain``: the float ones too; the
    packed sign buffers always, kernels/packed_signs.py); returns the packed results'
    (workers, row stride) pairs, in kernel argument order."""
    numels = numels_of(params)
    packed = [r for r in roles if dtypes[r.name] in PACKED]
    if plain:
        check_bucket([(r.name, by_role[r.name], getattr(torch, dtypes[r.name]))
                      for r in roles if r not in packed], params[0].device, numels, labels)
    labels = labels or [f"parameter {j}" for j in range(len(params))]
    comm = []
    for r in packed:
        found = check_packed(r.name, dtypes[r.name], by_role[r.name], numels,
                             params[0].device, labels, "triton")
        comm += found or ()
    return tuple(comm)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host-built table onto ``device`` without stalling the host: a copy from
    pageable memory waits for the stream, one from pinned memory is queued (the caching
    host allocator keeps the pinned block until the copy has run)."""
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class BlockMap:
    """Program -> (tensor index, first element) for one tuple of sizes and BLOCK_SIZE;
    ``members``: only these tensors' blocks (indices into ``numels``, the whole table)."""

    def __init__(self, numels: tuple[int, ...], block_size: int, device: torch.device,
                 members: tuple[int, ...] | None = None):
        sizes = torch.tensor(numels, dtype=torch.int64)
        ids = torch.arange(len(numels)) if members is None else torch.tensor(members,
                                                                           dtype=torch.int64)
        blocks = (sizes[ids] + block_size - 1) // block_size
        first = torch.cumsum(blocks, 0) - blocks  # the first block of each member
        local = torch.repeat_interleave(torch.arange(len(ids)), blocks)
        start = (torch.arange(int(blocks.sum())) - first[local]) * block_size
        self.n_programs = int(blocks.sum())
        self.numel = to_device(sizes, device)
        self.tensor = to_device(ids[local].to(torch.int32), device)
        self.start = to_device(start, device)


class Layout:
    """Caches block maps and the last address table for one bucket's tensor sizes."""

    def __init__(self, numels: tuple[int, ...], device: torch.device):
        self.numels, self.device = numels, device
        self.total = sum(numels)
        self._maps: dict[tuple, BlockMap] = {}
        self._addresses: tuple[int, ...] | None = None
        self.align = 1  # of the last address table, all tensors: see alignment()
        self.groups: list[tuple[tuple[int, ...] | None, int]] = [(None, 1)]
        self.aligned: tuple[bool, ...] = (False,) * len(numels)  # per tensor, every role
        self._table: torch.Tensor | None = None

    def block_map(self, block_size: int, members: tuple[int, ...] | None = None) -> BlockMap:
        found = self._maps.get((block_size, members))
        if found is None:
            found = self._maps[(block_size, members)] = BlockMap(
                self.numels, block_size, self.device, members)
        return found

    def known(self, addresses: tuple[int, ...]) -> bool:
        """True when these are the addresses of the last table (already validated)."""
        return addresses == self._addresses

    def address_table(self, addresses: tuple[int, ...]) -> torch.Tensor:
        """int64 [n_roles * n_tensors] addresses, reused while they do not change."""
        if addresses != self._addresses:
            self.align = alignment(addresses)
            self.groups = align_groups(addresses, len(self.numels))
            self.aligned = aligned_tensors(addresses, len(self.numels))
            # a new tensor each time (not an in-place update): a launch still queued
            # on the stream keeps reading the old table
            self._table = to_device(torch.tensor(addresses, dtype=torch.int64), self.device)
            self._addresses = addresses
        return self._table


def numels_of(params: list[torch.Tensor]) -> tuple[int, ...]:
    return tuple(p.numel() for p in params)


def addresses_of(rows: list[list[torch.Tensor]]) -> tuple[int, ...]:
    return tuple(t.data_ptr() for row in rows for t in row)


def alignment(addresses: tuple[int, ...]) -> int:
    """16 when every address is 16-byte aligned, else 1: the kernel's ALIGN hint.

    torch allocations are aligned, but a tensor that is a view at an odd offset (a
    slice of a flat buffer) is not; a wrong hint would make 128-bit accesses fault,
    so the hint is given only when it holds for the whole launch.
    """
    return 16 if all(a % 16 == 0 for a in addresses) else 1


def aligned_tensors(addresses: tuple[int, ...], n_tensors: int) -> tuple[bool, ...]:
    """Per tensor: whether its addresses in every role (rows of ``n_tensors``) are
    16-byte aligned."""
    return tuple(all(a % 16 == 0 for a in addresses[i::n_tensors]) for i in range(n_tensors))


def align_groups(addresses: tuple[int, ...], n_tensors: int):
    """The launches of one bucket: [(members or None for all, ALIGN)]. A tensor whose
    addresses (every role) are 16-byte aligned runs with ALIGN=16; misaligned ones (views
    at odd offsets) get a launch of their own with ALIGN=1, so one view does not make
    the whole bucket's accesses scalar (reduce stages split their launches the same
    way: reduce.TileGroup)."""
    if n_tensors == 0:
        return [(None, 1)]
    ok = aligned_tensors(addresses, n_tensors)
    if all(ok) or not any(ok):
        return [(None, 16 if all(ok) else 1)]
    return [(tuple(i for i in range(n_tensors) if ok[i]), 16),
            (tuple(i for i in range(n_tensors) if not ok[i]), 1)]
