"""Matrix states of a sharded (DTensor) parameter: Shampoo's and SOAP's factors, K-FAC's.

A matrix state (``(rows, rows)``, ``(cols, cols)``...) of a parameter sharded over a
mesh is a DTensor on the same mesh, its *rows* split where the parameter is split
(``Shard(0)`` on the mesh dimensions that shard the parameter, ``Replicate()`` on the
others, e.g. HSDP's replica dimension): every rank keeps ``1/world`` of each factor, and
``get_optimizer_state_dict`` / ``set_optimizer_state_dict`` and DCP save, load and
reshard them like any DTensor state. In the matrix stage the owning rank of the
parameter (runtime/shard_matrix.py) gathers the factors' rows with the parameter's
matrix inputs, computes their new values as one process would, and scatters their rows
back; they are written at commit, after the elementwise kernel, as in one process.
Communication per step and matrix: every factor once to the owner and once back.
"""
from __future__ import annotations

import torch

from .shard_matrix import chunk_sizes


def _placements(p) -> list:
    from torch.distributed.tensor import Replicate, Shard
    return [Shard(0) if pl.is_shard() else Replicate() for pl in p.placements]


def _my_rows(length: int, p) -> tuple[int, int]:
    """(start, count) of this rank's rows of a ``length``-row matrix state of ``p``."""
    mesh, start, count = p.device_mesh, 0, length
    for m, pl in enumerate(p.placements):
        if pl.is_shard():
            sizes = chunk_sizes(count, mesh.size(m))
            here = mesh.get_local_rank(m)
            start, count = start + sum(sizes[:here]), sizes[here]
    return start, count


def distribute_rows(full: torch.Tensor, p):
    """``full`` (the state as one process holds it) as a DTensor placed like ``p``'s rows.
    No communication: every rank builds the same ``full`` and keeps its rows."""
    from torch.distributed.tensor import DTensor
    start, count = _my_rows(full.shape[0], p)
    local = full.narrow(0, start, count).clone()
    return DTensor.from_local(local, p.device_mesh, _placements(p), run_check=False,
                              shape=full.shape, stride=full.stride())


def rows_dtensor(local: torch.Tensor, p, shape: tuple):
    """This rank's rows ``local`` of a new matrix-state value of ``p`` (full ``shape``),
    as a DTensor that the state's ``copy_`` takes at commit."""
    from torch.distributed.tensor import DTensor
    return DTensor.from_local(local, p.device_mesh, _placements(p), run_check=False,
                              shape=torch.Size(shape), stride=(shape[1], 1))


def check(name: str, label: str, decl_name: str, value, p, want: tuple) -> None:
    """A matrix state of sharded ``p``: a DTensor of the full shape placed like its rows."""
    ok = hasattr(value, "placements") and tuple(value.shape) == tuple(want) \
        and list(value.placements) == _placements(p) and value.device_mesh == p.device_mesh
    if not ok:
        shown = (f"a DTensor {tuple(value.shape)} placed {value.placements}"
                 if hasattr(value, "placements") else f"a {type(value).__name__}")
        raise RuntimeError(f"{name}: {label} is a DTensor placed {p.placements}; its matrix "
                           f"state {decl_name!r} is {shown}, the step needs a DTensor "
                           f"{tuple(want)} placed {_placements(p)} on its mesh (load sharded "
                           "checkpoints with torch.distributed.checkpoint.state_dict."
                           "set_optimizer_state_dict)")
