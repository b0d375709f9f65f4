"""The reduce stage of a step, for every param group at once (runtime/stepping.py).

Stage ``k`` runs for every group that has one before stage ``k + 1`` runs for any:

1. each bucket's launcher returns one partial per tensor and reduction (shape-only
   reductions, Muon's fan-in/fan-out, come from the shapes, with no kernel);
2. sharding hook: a DTensor parameter's partials cover its local shard; they are
   combined over its mesh, one all-reduce per stage (``shards.combine``);
3. reductions spanning the whole optimizer (``over="optimizer"``: global clipping) are
   totalled over every group whose rule computes the same reduction at this stage;
4. ``finish`` totals the group scopes and shapes every value to broadcast against its
   parameter; the non-finite count of stage 0 decides whether the group skips its step.

Nothing is written: an error here leaves every parameter and state as it was.
"""
from __future__ import annotations

import functools

import sympy as sp

from ..kernels.torch_launcher import compute_dtype
from . import scoped_states, shards
from .reductions import combine, finish, from_shapes


def reduce(opt, works: list) -> None:
    """Run every reduce stage of every group's plan; fills each ``work.reduced``."""
    for work in works:
        if work.compiled.has_reductions or work.compiled.plan.matrix_stages:
            work.reduced = {p: () for b in work.buckets for p in b.keys}
    scoped = any(w.compiled.has_scoped for w in works)
    if scoped:
        scoped_states.read(opt, works)  # scoped states' current values: the first results
    depth = max((len(w.compiled.plan.reduce_stages) for w in works), default=0)
    for k in range(depth):
        active = [w for w in works if k < len(w.compiled.plan.reduce_stages) and not w.skipped]
        partials = {id(w): _partials(w, k) for w in active}
        if any(b.sharded for w in active for b in w.buckets):
            shards.combine([(w.compiled.plan.reduce_stages[k].reductions, partials[id(w)])
                            for w in active])
        spanning = _optimizer_totals(k, active, partials) \
            if any(w.compiled.spans_optimizer for w in active) else {}
        for w in active:
            stage = w.compiled.plan.reduce_stages[k]
            for p, values in finish(stage.reductions, partials[id(w)],
                                    spanning.get(id(w), {})).items():
                w.reduced[p] += values
            if k == 0 and w.compiled.plan.nonfinite_check is not None:
                at = len(w.compiled.plan.scoped_loads) + [  # (scoped states' values first)
                    r.result for r in stage.reductions].index(w.compiled.plan.nonfinite_check)
                w.skipped = float(w.reduced[w.buckets[0].keys[0]][at]) > 0
        if k == 0:
            _skip_together(active)
    if scoped:
        scoped_states.compute(works)  # their new values, stored at commit


def _skip_together(works: list) -> None:
    """A non-finite gradient in one group poisons every optimizer-wide total it is part
    of (a global norm is NaN): the groups that share such totals skip together."""
    spanning = [w for w in works if w.compiled.plan.nonfinite_check is not None
                and w.compiled.spans_optimizer]
    if any(w.skipped for w in spanning):
        for w in spanning:
            w.skipped = True


def _partials(work, k: int) -> list[tuple]:
    """``[(param, its partials of stage k)]`` over the group's buckets."""
    stage = work.compiled.plan.reduce_stages[k]
    out = []
    for b in work.buckets:
        parts = from_shapes(stage.reductions, b.params, compute_dtype)
        if parts is None and b.members is None:
            parts = b.launcher.reduce(k, b.params, b.grads, b.states, b.scalars,
                                      b.reduced(work), prepared=b.prepared)
        elif parts is None:  # a sharded bucket: empty shards reduce to the identity
            parts = [shards.empty_partials(stage.reductions, key, compute_dtype)
                     for key in b.keys]
            if b.members:
                params, grads, states, _, reduced = b.kernel_args(work)
                found = b.launcher.reduce(k, params, grads, states, b.scalars, reduced)
                for j, value in zip(b.members, found):
                    parts[j] = value
        out += zip(b.keys, parts)
    return out


@functools.lru_cache(maxsize=1024)  # (SymPy's srepr per step was ~20 us of a small step)
def optimizer_key(k: int, r) -> tuple:
    """Which ``over="optimizer"`` reductions are one total: the same stage, operation and
    expression (scalars included: the hyperparameters' values may differ per group,
    their names are the rule's own)."""
    return k, r.op, sp.srepr(r.expr)


def _optimizer_totals(k: int, works: list, partials: dict) -> dict:
    """{id(work): {reduction index: total over every group}} for optimizer-wide scopes."""
    members: dict[tuple, list] = {}
    for w in works:
        for i, r in enumerate(w.compiled.plan.reduce_stages[k].reductions):
            if r.span == "optimizer":
                members.setdefault(optimizer_key(k, r), []).append((w, i))
    out: dict = {}
    for (_, op, _), found in members.items():
        # summed in a fixed order (groups, then their parameters): the same bits every run
        total = combine(op, [parts[i] for w, i in found for _, parts in partials[id(w)]])
        for w, i in found:
            out.setdefault(id(w), {})[i] = total
    return out
