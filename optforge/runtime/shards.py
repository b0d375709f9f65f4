"""Sharded parameters (FSDP2's ``fully_shard``, any DTensor): every rule steps the shards.

A DTensor reports the *global* shape while its memory is the local shard, so the step
never hands one to a kernel (see kernels/raw_memory.py). Instead, stage by stage
(runtime/stepping.py):

* **elementwise stages** (pre-stage, elementwise kernel) run on the local shards of the
  parameter, its gradient and its states (``local``): each element's update needs only
  that element;
* **reductions** over a tensor, a column or a group are first computed per shard, then
  the partials of every sharded parameter of a reduce stage are combined with one
  all-reduce per process group and operation (sum, or max for ``amax``/inf-norms;
  ``combine``). Row reductions under ``Shard(0)`` need no communication: each row lives
  on one rank. Element counts (``numel``) are partials like any sum, so a mean over a
  shard becomes the global mean;
* **matrix stages** gather each full matrix on one owning rank (runtime/shard_matrix.py).

Optimizer states of a sharded parameter are DTensors with its mesh and placements
(``initial_value`` makes them with torch's ``*_like`` operations), so torch's
``get_optimizer_state_dict`` / ``set_optimizer_state_dict`` and DCP save, load and
reshard them. Supported placements: ``Shard(d)`` and ``Replicate()`` on any mesh
dimension (FSDP2: ``Shard(0)``; HSDP: ``Replicate(), Shard(0)``); ``Partial`` is refused.
"""
from __future__ import annotations

import torch

from ..kernels.raw_memory import is_raw


def _dtensor_class():
    from torch.distributed.tensor import DTensor  # only once a wrapper tensor shows up
    return DTensor


def is_sharded(t) -> bool:
    """A DTensor (its memory is a local shard). Plain tensors answer in ~100 ns."""
    return t is not None and not is_raw(t) and isinstance(t, _dtensor_class())


def local(t):
    """What a kernel addresses: a DTensor's local shard (a view of its memory, so the
    kernel's writes land in the DTensor), anything else as it is (a launcher refuses
    other wrapper subclasses, naming them)."""
    if t is None or is_raw(t) or not isinstance(t, _dtensor_class()):
        return t
    return t._local_tensor  # to_local() without autograd: the same tensor, no copy


def shard_dims(t) -> list[tuple[int, int]]:
    """``[(mesh dim, tensor dim)]`` of each ``Shard`` placement of a DTensor."""
    return [(m, pl.dim) for m, pl in enumerate(t.placements) if pl.is_shard()]


def check(p, label: str, compiled, state: dict | None) -> None:
    """A sharded parameter the step can run: its placements, its gradient's and states',
    and the rule's scopes. Raises naming the parameter before anything is written."""
    name = compiled.spec.name
    for pl in p.placements:
        if not (pl.is_shard() or pl.is_replicate()):
            raise NotImplementedError(f"{name}: {label} is a DTensor placed {p.placements}; "
                                      "optforge steps Shard and Replicate placements")
    g = p.grad
    if not is_sharded(g) or g.placements != p.placements or g.device_mesh != p.device_mesh:
        shown = (f"a DTensor placed {g.placements}" if is_sharded(g)
                 else f"a {type(g).__name__}")
        raise RuntimeError(f"{name}: {label} is a DTensor placed {p.placements} but its "
                           f"gradient is {shown}; both must share the mesh and placements")
    if any(d != 0 for _, d in shard_dims(p)) and any(
            r.scope == "col" for r in compiled.plan.reductions):
        raise NotImplementedError(f"{name}: {label} is sharded on dimension "
                                  f"{[d for _, d in shard_dims(p)]}; the rule's per-column "
                                  "reductions need it sharded on dimension 0 (FSDP2's)")
    for key, value in (state or {}).items():
        if key != "step" and isinstance(value, torch.Tensor) and value.shape == p.shape and (
                not is_sharded(value) or value.placements != p.placements):
            raise RuntimeError(f"{name}: {label} is a DTensor placed {p.placements}, its state "
                               f"{key!r} is not placed like it (load sharded checkpoints with "
                               "torch.distributed.checkpoint.state_dict."
                               "set_optimizer_state_dict)")
    if compiled.plan.matrix_stages:
        from .shard_matrix import check as check_matrix
        check_matrix(p, label, compiled, state)


def nonempty(views: list) -> list[int] | None:
    """Indices of the local shards that have elements; None when all have (no filter)."""
    found = [j for j, t in enumerate(views) if t.numel()]
    return None if len(found) == len(views) else found


def empty_partials(ops, p, dtype_of) -> tuple:
    """A sharded parameter's partials over an empty local shard: the identity of each
    combination (0 for sums and counts, -inf for maxima), columns as wide as the global
    tensor's, no rows."""
    view = local(p)
    cols = p.numel() // max(p.shape[0], 1) if p.dim() else 1
    out = []
    for r in ops:
        fill = float("-inf") if r.op == "max" else float(p.dim()) if r.op == "ndim" else 0.0
        shape = ((cols,) if r.scope == "col" else (0,) if r.scope == "row" else ())
        if r.op in ("numel", "ndim"):
            shape = ()
        out.append(torch.full(shape, fill, dtype=dtype_of(view.dtype), device=view.device))
    return tuple(out)


def _mesh_dims_to_combine(op: str, scope: str, p) -> list[int]:
    """The mesh dimensions over which this reduction's shard partials must be combined."""
    if op == "ndim":  # the same on every shard
        return []
    dims = shard_dims(p)
    if scope == "row":  # a row lies on one rank unless the columns are split
        return [m for m, d in dims if d != 0]
    if scope == "col":  # (columns are never split: see check)
        return [m for m, d in dims if d == 0]
    return [m for m, _ in dims]


def shapes_differ(plan, p) -> bool:
    """Does a kernel of ``plan`` read an element count that the shard's shape gets wrong?

    The numba and triton kernels take numel over a tensor, its rows or columns from the
    shapes of the tensors they are given (a shape table, not a reduction result), so on
    a shard they would count the shard's elements (Muon's fan-out: its row count). Such
    buckets run the torch backend, whose kernels read every count as a finished
    reduction (combined over the shards)."""
    return any(r.op == "numel" and r.scope != "group" and _mesh_dims_to_combine(r.op,
               r.scope, p) for r in plan.reductions)


def combine(stages: list[tuple[list, list]]) -> None:
    """Sharding hook of the reduce stage: ``[(reductions, [(param, partials)])]`` of one
    stage of every group; each sharded parameter's partials are replaced in place by
    their totals over its shards. One all-reduce per mesh dimension, process group,
    operation and dtype, however many parameters and reductions the stage has."""
    pending = []  # (mesh dim, process group, op, dtype, partials list, index, reduction i)
    for ops, partials in stages:
        for at, (p, parts) in enumerate(partials):
            if not is_sharded(p):
                continue
            for i, r in enumerate(ops):
                for m in _mesh_dims_to_combine(r.op, r.scope, p):
                    pending.append((m, p.device_mesh.get_group(m), r.op, parts[i].dtype,
                                    partials, at, i))
    if not pending:
        return
    import torch.distributed as dist
    for m in sorted({entry[0] for entry in pending}):
        batches: dict = {}
        for entry in pending:
            if entry[0] == m:
                batches.setdefault(entry[1:4], []).append(entry[4:])
        for (group, op, _), members in batches.items():
            values = [partials[at][1][i] for partials, at, i in members]
            flat = torch.cat([v.reshape(-1) for v in values])
            dist.all_reduce(flat, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM,
                            group=group)
            _unpack(flat, values, members)


def _unpack(flat: torch.Tensor, values: list, members: list) -> None:
    offset = 0
    for v, (partials, at, i) in zip(values, members):
        p, parts = partials[at]
        total = flat[offset:offset + v.numel()].view(v.shape)
        offset += v.numel()
        partials[at] = (p, parts[:i] + (total,) + parts[i + 1:])
