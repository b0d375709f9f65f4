"""The matrix stage of a sharded (DTensor) parameter: gathered on one rank, scattered back.

Newton-Schulz (Muon), inverse roots (Shampoo) and the like need the whole matrix. For
each sharded parameter of a bucket, in the group's parameter order (the same on every
rank), one *owning* rank is chosen round-robin over the shard group, so the matrix work
is spread over the ranks as distributed Muon implementations do; then

1. the tensors the matrix stage reads (``MatrixStage.loads``: usually the pre-stage's
   ``pre<i>`` buffer, bfloat16 for Muon) and row-wise reductions are gathered on the
   owner (``torch.distributed.gather``, shards padded to equal length);
2. the owner runs the matrix stage on the full matrices, as a single process would
   (all gathers come first, so the owners of different matrices compute at once);
3. each output buffer is cut into the shards' pieces and scattered back
   (``torch.distributed.scatter``), where the elementwise kernel reads it.

Communication per matrix and step: every load's bytes once to the owner, every output's
bytes once back (Muon: 2 + 2 bytes per element), against an all-gather's
``world_size`` copies. Tensors travel as bytes, so any dtype crosses gloo. Matrix
states (Shampoo's factors) are not sharded yet: such rules are refused for DTensors.
"""
from __future__ import annotations

import torch

from .backends import BACKENDS
from .shards import is_sharded, shard_dims
from .state import storage_dtype


def check(p, label: str, compiled) -> None:
    """A sharded parameter's matrix stage can run (see the module docstring)."""
    name, plan = compiled.spec.name, compiled.plan
    kept = [s for s in plan.matrix_stages[0].matrix_states]
    if kept:
        raise NotImplementedError(f"{name}: {label} is a DTensor and the rule keeps matrix "
                                  f"states {kept}, which optforge does not shard yet; "
                                  "step this parameter unsharded or with another rule")
    if len(shard_dims(p)) > 1:
        raise NotImplementedError(f"{name}: {label} is sharded over {len(shard_dims(p))} mesh "
                                  "dimensions; the matrix stage gathers over one")


def chunk_sizes(length: int, world: int) -> list[int]:
    """Each rank's share of ``length`` rows: torch.chunk's, as DTensor's Shard uses."""
    sizes = [len(c) for c in torch.empty(length, device="meta").chunk(world)]
    return sizes + [0] * (world - len(sizes))


class _Shards:
    """The communication of one sharded parameter: its group, dimension and owner."""

    def __init__(self, p, owner: int):
        import torch.distributed as dist
        self.dist = dist
        mesh_dim, self.dim = shard_dims(p)[0]
        self.group = p.device_mesh.get_group(mesh_dim)
        self.world, self.me = dist.get_world_size(self.group), dist.get_rank(self.group)
        self.owner = owner % self.world
        self.owner_global = dist.get_global_rank(self.group, self.owner)
        self.sizes = chunk_sizes(p.shape[self.dim], self.world)
        self.global_shape = tuple(p.shape)
        self.inputs = None  # the gathered ([p], [g], [[state]...], reduced) on the owner

    @property
    def owns(self) -> bool:
        return self.me == self.owner

    def _padded_bytes(self, t: torch.Tensor) -> torch.Tensor:
        shape = list(t.shape)
        shape[self.dim] = max(self.sizes)
        padded = t.new_zeros(shape)
        padded.narrow(self.dim, 0, t.shape[self.dim]).copy_(t)
        return padded.reshape(-1).view(torch.uint8)

    def _unpad(self, data: torch.Tensor, like_shape, dtype, rows: int) -> torch.Tensor:
        shape = list(like_shape)
        shape[self.dim] = max(self.sizes)
        return data.view(dtype).view(shape).narrow(self.dim, 0, rows)

    def gather(self, t: torch.Tensor) -> torch.Tensor | None:
        """The full tensor on the owner (None elsewhere) from every rank's shard ``t``."""
        data = self._padded_bytes(t.contiguous())
        pieces = [torch.empty_like(data) for _ in range(self.world)] if self.owns else None
        self.dist.gather(data, pieces, dst=self.owner_global, group=self.group)
        if not self.owns:
            return None
        return torch.cat([self._unpad(d, t.shape, t.dtype, self.sizes[r])
                          for r, d in enumerate(pieces)], self.dim)

    def scatter(self, full: torch.Tensor | None, local_shape, dtype) -> torch.Tensor:
        """This rank's piece of the owner's ``full`` tensor."""
        shape = list(local_shape)
        shape[self.dim] = max(self.sizes)
        recv = torch.empty(shape, dtype=dtype).reshape(-1).view(torch.uint8)
        pieces = None
        if self.owns:
            starts = [sum(self.sizes[:r]) for r in range(self.world)]
            pieces = [self._padded_bytes(full.narrow(self.dim, starts[r], self.sizes[r]))
                      for r in range(self.world)]
        self.dist.scatter(recv, pieces, src=self.owner_global, group=self.group)
        return self._unpad(recv, local_shape, dtype, local_shape[self.dim]).contiguous()


def run(work, b) -> list[tuple]:
    """Sharding hook of the matrix stage: per parameter of bucket ``b``, its outputs (as
    ``TorchLauncher.matrix`` returns them), each sharded one computed on its owner.

    Three phases, so that the owners compute at the same time: every gather, then each
    rank's own matrices (and the unsharded ones), then every scatter."""
    plan = work.compiled.plan
    launcher = work.compiled.launcher(BACKENDS["torch"])
    outputs_of = plan.matrix_stages[0].outputs
    reduced = b.reduced(work)
    jobs = {}
    for j, key in enumerate(b.keys):
        if is_sharded(key):
            comm = jobs[j] = _Shards(key, work.index + work.matrix_turn)
            work.matrix_turn += 1
            comm.inputs = _gathered(plan, comm, b, j, [[s[j]] for s in b.states], reduced[j])
    results = []
    for j in range(len(b.keys)):
        comm = jobs.get(j)
        if comm is None:
            results += launcher.matrix(0, [b.params[j]], [b.grads[j]],
                                       [[s[j]] for s in b.states], b.scalars, [reduced[j]])
        elif comm.owns:
            full = comm.inputs
            results.append(launcher.matrix(0, *full[:3], b.scalars, [full[3]])[0])
        else:
            results.append((None,) * len(outputs_of))
        if comm is not None:
            comm.inputs = None  # the gathered matrices are not needed any more
    for j, comm in jobs.items():
        results[j] = tuple(
            comm.scatter(out, b.params[j].shape, storage_dtype(plan.states[name], b.params[j]))
            for out, (name, _) in zip(results[j], outputs_of))
    return results


def _gathered(plan, comm: _Shards, b, j: int, states: list, reduced: tuple):
    """([p], [g], [[state]...], reduced) full-sized on the owner: what the stage loads is
    gathered, the rest is an unread placeholder of the full shape."""
    loads = {ref.name for ref in plan.matrix_stages[0].loads}
    p = b.params[j]

    def full(name: str, t):
        if name in loads:
            return comm.gather(t)
        if t is None or not comm.owns:
            return None
        return torch.empty(comm.global_shape, dtype=t.dtype, device=t.device)

    p_full, g_full = full("p", p), full("g", b.grads[j])
    state_full = [[full(name, s[0])] for name, s in zip(plan.states, states)]
    rows = [comm.gather(v) if r.scope == "row" and comm.dim == 0 and v.dim() else v
            for r, v in zip(plan.reductions, reduced)]
    return [p_full], [g_full], state_full, tuple(rows)
