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
states (Shampoo's factors) are DTensors split by rows (runtime/shard_matrix_states.py):
their rows are gathered on the owner like the loads, and their new values scattered
back, to be written at commit.

A matrix stage that can fail at run time (inverse, inv_root, solve, eigenvectors) may
fail on one owner only; such rules add one small all-reduce before the scatters so that
every rank of the shard group raises (step_verdict's messages) instead of waiting.
"""
from __future__ import annotations

import torch

from .backends import BACKENDS
from .shards import is_sharded, shard_dims
from .state import matrix_shape, storage_dtype


def check(p, label: str, compiled, state: dict | None = None) -> None:
    """A sharded parameter's matrix stage can run (see the module docstring), and its
    matrix states are DTensors placed like its rows (runtime/shard_matrix_states.py)."""
    from .shard_matrix_states import check as check_state
    from .state import matrix_shape
    name, plan = compiled.spec.name, compiled.plan
    if len(shard_dims(p)) > 1:
        raise NotImplementedError(f"{name}: {label} is sharded over {len(shard_dims(p))} mesh "
                                  "dimensions; the matrix stage gathers over one")
    batches = [n for n, d in plan.states.items() if d.kind == "input" and d.shape]
    if batches:  # each rank records its own batch: gathering them as rows would be wrong
        raise NotImplementedError(f"{name}: {label} is a DTensor and the rule reads layer "
                                  f"statistics {batches} (K-FAC-like), which optforge does "
                                  "not combine over shards yet; step this parameter "
                                  "unsharded or with another rule")
    for kept in plan.matrix_stages[0].matrix_states:
        if state and kept in state:  # (a new parameter's states are made placed right)
            check_state(name, label, kept, state[kept], p,
                        matrix_shape(plan.states[kept], p))


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

    def split(self, rows: int | None) -> tuple[int, list[int]]:
        """(dimension, each rank's size on it): the parameter's, or the first dimension of
        a matrix state of ``rows`` rows (split by rows, shard_matrix_states.py)."""
        return (self.dim, self.sizes) if rows is None else (0, chunk_sizes(rows, self.world))

    @staticmethod
    def _padded_bytes(t: torch.Tensor, dim: int, sizes: list[int]) -> torch.Tensor:
        shape = list(t.shape)
        shape[dim] = max(sizes)
        padded = t.new_zeros(shape)
        padded.narrow(dim, 0, t.shape[dim]).copy_(t)
        return padded.reshape(-1).view(torch.uint8)

    @staticmethod
    def _unpad(data: torch.Tensor, like_shape, dtype, rows: int, dim: int,
               sizes: list[int]) -> torch.Tensor:
        shape = list(like_shape)
        shape[dim] = max(sizes)
        return data.view(dtype).view(shape).narrow(dim, 0, rows)

    def gather(self, t: torch.Tensor, rows: int | None = None) -> torch.Tensor | None:
        """The full tensor on the owner (None elsewhere) from every rank's shard ``t``
        (``rows``: ``t`` holds rows of a matrix state that many rows long)."""
        dim, sizes = self.split(rows)
        data = self._padded_bytes(t.contiguous(), dim, sizes)
        pieces = [torch.empty_like(data) for _ in range(self.world)] if self.owns else None
        self.dist.gather(data, pieces, dst=self.owner_global, group=self.group)
        if not self.owns:
            return None
        return torch.cat([self._unpad(d, t.shape, t.dtype, sizes[r], dim, sizes)
                          for r, d in enumerate(pieces)], dim)

    def scatter(self, full: torch.Tensor | None, local_shape, dtype,
                rows: int | None = None) -> torch.Tensor:
        """This rank's piece of the owner's ``full`` tensor."""
        dim, sizes = self.split(rows)
        shape = list(local_shape)
        shape[dim] = max(sizes)
        recv = torch.empty(shape, dtype=dtype).reshape(-1).view(torch.uint8)
        pieces = None
        if self.owns:
            starts = [sum(sizes[:r]) for r in range(self.world)]
            pieces = [self._padded_bytes(full.narrow(dim, starts[r], sizes[r]), dim, sizes)
                      for r in range(self.world)]
        self.dist.scatter(recv, pieces, src=self.owner_global, group=self.group)
        return self._unpad(recv, local_shape, dtype, local_shape[dim], dim, sizes).contiguous()


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
    failure, results = None, []
    try:
        results = _computed(launcher, b, jobs, reduced, len(outputs_of))
    except Exception as exc:  # noqa: BLE001 - re-raised below, once the other ranks know
        failure = exc
    if jobs and _fallible(work.compiled):
        _agree(next(iter(jobs.values())).group, failure)  # or the others wait in scatter
    if failure is not None:
        raise failure
    for j, comm in jobs.items():
        results[j] = tuple(_scattered(comm, out, plan.states[name], b.keys[j], b.params[j])
                           for out, (name, _) in zip(results[j], outputs_of))
    return results


def _computed(launcher, b, jobs: dict, reduced: list, n_outputs: int) -> list[tuple]:
    """Each parameter's matrix-stage outputs: computed here for unsharded parameters and
    the sharded ones this rank owns, placeholders for the others."""
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
            results.append((None,) * n_outputs)
        if comm is not None:
            comm.inputs = None  # the gathered matrices are not needed any more
    return results


def _fallible(compiled) -> bool:
    """Can the rule's matrix stage raise at run time (a factorization of a matrix that
    is not positive definite)? Answered once per compiled rule."""
    found = compiled.__dict__.get("_fallible_matrix")
    if found is None:
        import sympy as sp

        from ..compiler.passes.split_prestage import FALLIBLE
        found = compiled.__dict__["_fallible_matrix"] = any(
            isinstance(node, FALLIBLE) for _, e in compiled.plan.matrix_stages[0].outputs
            for node in sp.preorder_traversal(e))
    return found


def _agree(group, failure: Exception | None) -> None:
    """A factorization may fail on one owner only: one small all-reduce before the
    scatters, so every rank of the shard group raises instead of waiting in them (the
    failing rank its own error; see step_verdict)."""
    from .step_verdict import Facts, _vote
    _vote(group, failure, Facts(), "this bucket's parameters and states were not stepped "
          "(earlier buckets of the step were, as in one process)")


def _scattered(comm: _Shards, full, decl, key, local_p):
    """This rank's piece of an output: a buffer shaped like the local shard, or a matrix
    state's rows as a DTensor (written into the state at commit)."""
    dtype = storage_dtype(decl, local_p)
    if decl.kind != "matrix":
        return comm.scatter(full, local_p.shape, dtype)
    from .shard_matrix_states import rows_dtensor
    shape = matrix_shape(decl, key)
    _, sizes = comm.split(shape[0])
    rows = comm.scatter(full, (sizes[comm.me],) + tuple(shape[1:]), dtype, rows=shape[0])
    return rows_dtensor(rows, key, shape)


def _gathered(plan, comm: _Shards, b, j: int, states: list, reduced: tuple):
    """([p], [g], [[state]...], reduced) full-sized on the owner: what the stage loads is
    gathered, the rest is an unread placeholder of the full shape."""
    loads = {ref.name for ref in plan.matrix_stages[0].loads}
    p = b.params[j]

    def full(name: str, t):
        decl = plan.states.get(name)
        matrix = decl is not None and decl.kind == "matrix"
        shape = matrix_shape(decl, b.keys[j]) if matrix else comm.global_shape
        if name in loads:
            return comm.gather(t, rows=shape[0] if matrix else None)
        if t is None or not comm.owns:
            return None
        return torch.empty(shape, dtype=t.dtype, device=t.device)

    p_full, g_full = full("p", p), full("g", b.grads[j])
    state_full = [[full(name, s[0])] for name, s in zip(plan.states, states)]
    rows = [comm.gather(v) if r.scope == "row" and comm.dim == 0 and v.dim() else v
            for r, v in zip(plan.reductions, reduced)]
    return [p_full], [g_full], state_full, tuple(rows)
