"""The check stage's verdict, shared by every rank of a distributed step.

A step of a distributed optimizer may run collectives: the all-reduce of the reduce
stages' partials and the gather of a matrix for sharded (DTensor) parameters, a rule's
allreduce / majority_vote. If one rank alone
refused the step in collect or check (a gradient of the wrong dtype, a missing state),
the others would wait in the step's first collective until its timeout. So on the
distributed path the check stage ends with one small all-reduce (MAX over an int64
vector: one error flag per rank, then each rank's ``facts`` and their negations, which
must agree): every rank learns whether any rank failed, and every rank raises before
anything is written: the failing rank its own error (with a note naming its rank), the
others a ``StepRefusedError`` naming the failing rank(s) and their errors. Only then,
on that rare path, are the messages exchanged (``all_gather_object``).

The cost is that one all-reduce of ``world + 6`` int64 per step, a synchronisation point
(measured in tests/distributed/test_step_verdict.py, docs/distributed.md). Steps without
collectives skip it: single processes, DDP, and elementwise rules (AdamW, Lion) on
shards, where a rank's error leaves no other rank waiting inside the step.
A matrix factorization failing on one owner (after the step's first collectives) is
agreed on the same way by shard_matrix before its scatters. Errors raised before the
step's stages (a missing ``inputs`` entry) on one rank only are not covered.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from . import shards
from .collective_stage import FACTS, CollectiveError, process_group


class StepRefusedError(RuntimeError):
    """Another rank of the group could not step: no rank has stepped."""


@dataclass
class Facts:
    """What the stages found that every rank must agree on, set inside ``agreed``."""

    values: list[int] = field(default_factory=list)
    detail: object = None  # explains a disagreement (exchanged only then)


def _first_dtensor(opt, group: dict):
    """The group's first DTensor parameter, or None (cached per params list and length)."""
    cache = opt.__dict__.setdefault("_verdict_dtensors", {})
    params = group["params"]
    cached = cache.get(id(params))
    if cached is None or cached[0] is not params or cached[1] != len(params):
        found = next((p for p in params if shards.is_sharded(p)), None)
        cached = cache[id(params)] = (params, len(params), found)
    return cached[2]


def verdict_group(opt, compiled: list):
    """The group whose ranks run collectives in this step, or None: no verdict needed (a
    single process, or a step without collectives: elementwise rules on shards, DDP).
    ``compiled[i]``: param group i's rule variant for this step."""
    # the rules first (attributes): most steps need no verdict whatever the process group
    busy = [(group, rule.plan) for group, rule in zip(opt.param_groups, compiled)
            if group["params"] and (rule.has_collectives or rule.reduces)]
    if not busy or not dist.is_available() or not dist.is_initialized():
        return None
    if any(plan.collectives for _, plan in busy):
        return process_group(opt)
    sharded = None
    for group, plan in busy:
        if plan.reduce_stages or plan.matrix_stages:
            sharded = _first_dtensor(opt, group)  # shard partials, gathered matrices
            if sharded is not None:
                break
    if sharded is None:
        return None
    mesh = sharded.device_mesh
    # a 1-D mesh (FSDP2) is its group; a 2-D one (HSDP) spans every rank it holds
    return mesh.get_group(0) if mesh.ndim == 1 else dist.group.WORLD


@contextlib.contextmanager
def agreed(group):
    """Run collect and check inside; every rank of ``group`` (``verdict_group``'s answer,
    not None) leaves together: all stepping on, or all raising."""
    facts = Facts()
    try:
        yield facts
    except Exception as exc:
        _vote(group, exc, facts)
        raise
    _vote(group, None, facts)


_DEVICES: dict = {}  # process group -> where its collectives take tensors


def _device(group) -> torch.device:
    """NCCL takes CUDA tensors only; gloo and the rest CPU ones."""
    found = _DEVICES.get(group)
    if found is None:
        found = _DEVICES[group] = (torch.device("cuda", torch.cuda.current_device())
                                   if dist.get_backend(group) == "nccl"
                                   else torch.device("cpu"))
    return found


BEFORE_WRITES = "no rank has stepped"


def _vote(group, failure: Exception | None, facts: Facts,
          outcome: str = BEFORE_WRITES) -> None:
    """Every rank learns which ranks failed; ``outcome`` says what that left behind."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    # the same length on every rank, however far this one got: a failed rank sends zeros
    values = facts.values if failure is None and len(facts.values) == FACTS else [0] * FACTS
    row = [0] * world
    row[rank] = int(failure is not None)
    flags = torch.tensor(row + values + [-v for v in values], dtype=torch.int64,
                         device=_device(group))
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
    got = flags.tolist()  # (one device-to-host copy)
    failed = [r for r in range(world) if got[r]]
    if failed:
        shown = None if failure is None else f"{type(failure).__name__}: {failure}"
        messages = [None] * world
        dist.all_gather_object(messages, shown, group=group)
        if failure is not None:
            failure.add_note(f"(rank {rank} of {world}: every rank of the process group "
                             f"refused this step; {outcome})")
            return
        reasons = "; ".join(f"rank {r}: {messages[r]}" for r in failed)
        raise StepRefusedError(f"rank {rank}: rank(s) {failed} of {world} could not step, so "
                               f"{outcome} ({reasons})")
    highest, lowest = got[world:world + FACTS], [-v for v in got[world + FACTS:]]
    if failure is None and highest != lowest:
        _disagree(group, world, rank, facts)


def _disagree(group, world: int, rank: int, facts: Facts) -> None:
    """The ranks would send different sizes: name what differs, on every rank."""
    details = [None] * world
    dist.all_gather_object(details, facts.detail, group=group)
    raise CollectiveError(f"rank {rank}: the ranks would exchange different data this step: "
                          f"{describe_difference(details)}; every rank must build the same "
                          "model and param groups and step the same parameters")


def describe_difference(details: list) -> str:
    """Each rank's ``(signature, parameters per group)``: the optimizers' sizes when they
    differ, else which (group, parameter) pairs send on some ranks and not on others."""
    held = [d[1] if d else None for d in details]
    if any(h != held[0] for h in held):
        return f"the ranks' optimizers hold different parameters ({held}: parameters per " \
               "param group, by rank)"
    owned = [{(g, i): n for g, i, n, _ in (d[0] if d else ())} for d in details]
    keys = sorted(set().union(*owned))
    partial = [k for k in keys if any(k not in o for o in owned)]
    if partial:
        shown = ", ".join(f"parameter {i} of group {g}" for g, i in partial)
        return f"{shown} ha{'s' if len(partial) == 1 else 've'} a gradient on some ranks " \
               "and not on others"
    sizes = [sum(o.values()) for o in owned]
    return f"the ranks send {min(sizes)} to {max(sizes)} elements ({sizes} by rank)"
