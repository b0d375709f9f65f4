"""The check stage's verdict, shared by every rank of a distributed step.

A step of a distributed optimizer (sharded DTensor parameters, or a rule with
collectives) runs collectives: the all-reduce of the reduce stages' partials, the
gather of a sharded matrix, a rule's allreduce / majority_vote. If one rank alone
refused the step in collect or check (a gradient of the wrong dtype, a missing state),
the others would wait in the step's first collective until its timeout. So on the
distributed path the check stage ends with one small all-reduce (MAX over an int64
vector: one error flag per rank, then each rank's ``facts`` and their negations, which
must agree): every rank learns whether any rank failed, and every rank raises before
anything is written: the failing rank its own error (with a note naming its rank), the
others a ``StepRefusedError`` naming the failing rank(s) and their errors. Only then,
on that rare path, are the messages exchanged (``all_gather_object``).

The cost is that one all-reduce of a few int64 per step (measured in
tests/distributed/test_step_verdict.py, documented in docs/distributed.md); optimizers
with neither DTensor parameters nor collectives, and single processes, skip it.
Errors raised before the step's stages (a missing ``inputs`` entry) or inside a stage
after its collectives started (a matrix factorization failing on its owner) are not
covered.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from . import shards
from .collective_stage import CollectiveError, process_group


class StepRefusedError(RuntimeError):
    """Another rank of the group could not step: no rank has stepped."""


@dataclass
class Facts:
    """What the stages found that every rank must agree on, set inside ``agreed``."""

    values: list[int] = field(default_factory=list)
    detail: object = None  # explains a disagreement (exchanged only then)


def _first_dtensor(opt):
    key = tuple((id(g["params"]), len(g["params"])) for g in opt.param_groups)
    cached = opt.__dict__.get("_verdict_dtensor")
    if cached is None or cached[0] != key:
        found = next((p for g in opt.param_groups for p in g["params"]
                      if shards.is_sharded(p)), None)
        cached = opt.__dict__["_verdict_dtensor"] = (key, found)
    return cached[1]


def verdict_group(opt):
    """The group whose ranks run this step's collectives, or None (no verdict needed)."""
    if not dist.is_available() or not dist.is_initialized():
        return None
    if any(opt._compiled(g).plan.collectives for g in opt.param_groups if g["params"]):
        return process_group(opt)
    p = _first_dtensor(opt)
    if p is None:
        return None
    mesh = p.device_mesh
    # a 1-D mesh (FSDP2) is its group; a 2-D one (HSDP) spans every rank it holds
    return mesh.get_group(0) if mesh.ndim == 1 else dist.group.WORLD


@contextlib.contextmanager
def agreed(opt):
    """Run collect and check inside; on the distributed path every rank leaves together:
    all stepping on, or all raising."""
    group = verdict_group(opt)
    facts = Facts()
    if group is None:
        yield facts
        return
    try:
        yield facts
    except Exception as exc:
        _vote(group, exc, facts)
        raise
    _vote(group, None, facts)


def _device(group) -> torch.device:
    """NCCL takes CUDA tensors only; gloo and the rest CPU ones."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _vote(group, failure: Exception | None, facts: Facts) -> None:
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    values = facts.values if failure is None else [0] * len(facts.values)
    n = len(values)
    flags = torch.zeros(world + 2 * n, dtype=torch.int64)
    flags[rank] = int(failure is not None)
    if n and failure is None:
        flags[world:world + n] = torch.tensor(values)
        flags[world + n:] = -torch.tensor(values)
    flags = flags.to(_device(group))
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
    flags = flags.cpu()
    failed = flags[:world].nonzero().flatten().tolist()
    if failed:
        shown = None if failure is None else f"{type(failure).__name__}: {failure}"
        messages = [None] * world
        dist.all_gather_object(messages, shown, group=group)
        if failure is not None:
            failure.add_note(f"(rank {rank} of {world}: every rank of the process group "
                             "refused this step; none has stepped)")
            return
        reasons = "; ".join(f"rank {r}: {messages[r]}" for r in failed)
        raise StepRefusedError(f"rank {rank}: rank(s) {failed} of {world} could not step, so "
                               f"no rank has stepped ({reasons})")
    if n and failure is None and not torch.equal(flags[world:world + n],
                                                 -flags[world + n:]):
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
