"""The collective stage: a rule's ``allreduce`` / ``majority_vote`` over the workers.

It runs after the reduce stages and before any write of the step (see stepping.run):

1. the elementwise pre-stage of every bucket whose rule has collectives writes the values
   each worker contributes into its ``send_<name>`` buffers (one fused kernel, generated
   for the bucket's backend like every kernel): float32 values, or for a 1-bit
   collective the packed bits themselves, a flag byte (NaN) and 1 bit per element per
   parameter (compiler/packed_signs.py; allocated here with the flag clear);
2. the values of every group and parameter are sent together, in the same order on
   every rank: the 1-bit ones as one all-gather of those segments behind a byte saying
   this rank skips a group, the 32-bit ones as one float32 all-reduce with one more
   element counting ranks with NaN/Inf or a skipped group. On a single process (no
   process group) both are the identity;
3. every rank reduces the same gathered bytes in the same order, so ranks that start
   equal stay equal bit for bit: a 1-bit result is handed to the elementwise kernel as
   the (workers, segment) view of the gathered bytes, which it counts itself (float32
   values counted here where its plan has reduce stages), a 32-bit one as the summed
   values.

A rank with NaN/Inf in what it would send makes every rank refuse the step before
anything is written (``NonFiniteCollectiveError``), or, with ``skip_nonfinite=True``,
skip it. That every rank sends the same sizes in the same order is checked before the
step's first collective by the step's verdict (runtime/step_verdict.py), with the
``facts`` that ``check`` returns. Results a user supplies through
``step(inputs={name: {param: tensor}})`` are not communicated.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..compiler.packed_signs import SIGN_VOTES
from ..kernels.sign_bits_torch import vote_values


FACTS = 3  # what ``check`` returns for the verdict: 1-bit numel, fp32 numel, a signature hash


class CollectiveError(RuntimeError):
    """The ranks cannot run this step's collectives (raised on every rank alike)."""


class NonFiniteCollectiveError(CollectiveError):
    """Some rank's values to send hold NaN or Inf: nothing was written (on every rank)."""


def process_group(opt):
    """The optimizer's ``process_group`` (default WORLD), or None on a single process."""
    if not dist.is_available() or not dist.is_initialized():
        return None
    group = getattr(opt, "process_group", None)
    return group if group is not None else dist.group.WORLD


def _with_collectives(works) -> list:
    return [w for w in works if w.compiled.plan.collectives]


def _parts(works):
    """(work, op, bucket, send values, result column) of every exchange, in wire order;
    results a user supplied (already in the column) are left out."""
    for work in _with_collectives(works):
        names = list(work.compiled.plan.states)
        for op in work.compiled.plan.collectives:
            for b in work.buckets:
                column = names.index(op.result)
                if all(v is None for v in b.states[column]):
                    yield work, op, b, b.states[names.index(op.send)], column


def check(opt, works) -> tuple[list[int], tuple | None]:
    """Before any collective: refuse what cannot be exchanged. Returns what every rank
    must agree on (numel per channel and a hash of the signature) and, to explain a
    disagreement, the signature (which parameters, as (group, index in group), send how
    many elements, in wire order) and the number of parameters of each param group."""
    if not any(w.compiled.plan.collectives for w in works):
        return [0, 0, 0], None  # (a rank with no gradient still agrees, or disagrees)
    numel = {1: 0, 32: 0}
    signature, devices = [], set()
    for work, op, b, _, _ in _parts(works):
        if b.sharded:
            raise TypeError(
                f"{type(opt).__name__}: {b.labels[0]} is a DTensor (FSDP2 / tensor "
                f"parallel); the rule's collective {op.result!r} reduces over data-parallel "
                "workers that each hold whole, replicated parameters (plain per-rank models "
                "or DDP with no_sync())")
        for j, p in enumerate(b.params):
            numel[op.bits] += p.numel()
            signature.append((work.index, b.labels.indices[j], p.numel(), op.bits))
            devices.add(p.device)
    if len(devices) > 1:
        raise RuntimeError(f"{type(opt).__name__}: parameters with collectives on several "
                           f"devices ({sorted(map(str, devices))}); one optimizer exchanges "
                           "one flat vector, so give each device its own optimizer")
    # a hash of ints is the same in every process (no hash seed), masked to stay in int64
    return ([numel[1], numel[32], hash(tuple(signature)) & ((1 << 62) - 1)],
            (signature, [len(g["params"]) for g in opt.param_groups]))


def exchange(opt, works, run_pre_stage) -> None:
    """Steps 1-3 above; ``run_pre_stage(bucket)`` is the step's pre-stage."""
    comm = _with_collectives(works)
    if not comm:
        return
    for work in comm:
        for b in work.buckets:
            run_pre_stage(b)
            b.pre = None  # done: the write stages must not run it again
    group = process_group(opt)
    skipping = any(w.skipped for w in comm)  # a local non-finite gradient (skip_nonfinite)
    for bits in (1, 32):
        parts = [part for part in _parts(works) if part[1].bits == bits]
        if parts:
            bad = _exchange_1bit(parts, group, skipping) if bits == 1 else \
                _exchange_fp32(parts, group, skipping)
            if bad:
                _refuse(opt, comm, bad)
                return


def _flat(parts) -> torch.Tensor:
    values = [v.reshape(-1) for *_, sends, _ in parts for v in sends]
    return values[0] if len(values) == 1 else torch.cat(values)


def _exchange_1bit(parts, group, skipping: bool) -> str | None:
    """One all-gather of every rank's packed signs, which the pre-stage kernels wrote
    (compiler/packed_signs.py: per parameter a flag byte, then its bits), behind a byte
    saying this rank skips; returns why the step is refused."""
    segments = [v for *_, sends, _ in parts for v in sends]
    device = segments[0].device
    skip = torch.full((1,), int(skipping), dtype=torch.uint8, device=device)
    payload = torch.cat([skip, *segments])
    if group is None:
        gathered = payload.unsqueeze(0)
    else:
        gathered = torch.empty(dist.get_world_size(group), payload.numel(), dtype=torch.uint8,
                               device=device)
        # torch >= 2.12 names it all_gather_single (all_gather_into_tensor warns there)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(gathered.view(-1), payload, group=group)
    starts = torch.tensor([0] + _segment_starts(segments), device=device)
    flags = gathered.index_select(1, starts).amax(dim=1)  # skips and each NaN flag
    if bool(flags.any()):
        return f"rank(s) {flags.nonzero().flatten().tolist()}"
    at = 1
    for _, op, b, sends, column in parts:
        views, packed = [], _reads_packed(b, column)
        for p, v in zip(b.params, sends):
            rows = gathered[:, at:at + v.numel()]  # every worker's segment of p
            views.append(rows if packed else vote_values(rows, p, op.op))
            at += v.numel()
        b.states[column] = views
    return None


def _segment_starts(segments) -> list[int]:
    """Where each segment (its flag byte) starts in the payload, after the skip byte."""
    starts, at = [], 1
    for v in segments:
        starts.append(at)
        at += v.numel()
    return starts


def _reads_packed(b, column: int) -> bool:
    """Whether the bucket's elementwise kernel counts the votes itself (``sign_votes``);
    else (a multi-stage plan) it reads float32 values counted here."""
    decl = list(b.compiled.plan.states.values())[column]
    return decl.dtype == SIGN_VOTES


def _exchange_fp32(parts, group, skipping: bool) -> str | None:
    """One float32 all-reduce (sum) of every rank's values and a non-finite count."""
    values = _flat(parts)
    flat = torch.empty(values.numel() + 1, dtype=torch.float32, device=values.device)
    flat[:-1] = values
    flat[-1] = float(skipping or not bool(torch.isfinite(values).all()))
    world = 1
    if group is not None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        world = dist.get_world_size(group)
    if float(flat[-1]) != 0:
        return f"{int(flat[-1])} rank(s)"
    _deliver(parts, flat[:-1], world)
    return None


def _deliver(parts, totals: torch.Tensor, world: int) -> None:
    """Finish each fp32 collective on its range of ``totals`` (the sum over the workers)
    and hand the elementwise stage a parameter-shaped view per parameter."""
    at = 0
    for _, op, b, sends, column in parts:
        size = sum(v.numel() for v in sends)
        if op.op == "mean":
            totals[at:at + size].div_(world)
        views, k = [], at
        for v in sends:
            views.append(totals[k:k + v.numel()].view(v.shape))
            k += v.numel()
        b.states[column] = views
        at += size


def _refuse(opt, comm, who: str) -> None:
    """Some rank has NaN/Inf (or skips a group): every rank skips or raises alike."""
    if opt.skip_nonfinite:
        for work in comm:
            work.skipped = True
        return
    raise NonFiniteCollectiveError(
        f"{type(opt).__name__}: {who} of the process group have NaN or Inf in the values "
        "they would send (gradients or states); no rank has stepped (skip_nonfinite=True "
        "skips such steps on every rank)")
