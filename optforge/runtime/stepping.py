"""One ``Optimizer.step()`` as named stages: collect -> check -> reduce -> apply.

A step is all or nothing up to its first write: *collect* and *check* run for every
param group before anything runs (they build the buckets and the states a new
parameter gets, but install nothing), then the reduce stages of every group (they write
nothing), then the matrix-stage argument checks of every group, and only then *apply*
writes: it installs new states, runs the pre-stage, matrix and elementwise kernels and
commits ``step`` and matrix states. An error in any check of any group therefore leaves
every parameter, state and step count as it was, and names the parameter by its index
in its group (``parameter 1 of group 2``), not by its place in a bucket.
"""
from __future__ import annotations

import functools
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..dsl.randomness import draw
from ..kernels.torch_launcher import compute_dtype
from .backends import BACKENDS
from .reductions import finish, from_shapes
from .state import STORAGE_DTYPES, matrix_shape, new_state, storage_dtype

SKIP_COUNTER = "nonfinite_skips"  # param_groups key: steps skipped for NaN/Inf gradients


def step_lock(opt) -> threading.RLock:
    """The optimizer's step lock: concurrent ``step()`` calls from several threads run one
    after another (unserialised, two threads read the same ``step`` and lost updates:
    300 calls counted 150-253 steps). Made on first use and kept out of the optimizer's
    state: ``setdefault`` is atomic under the GIL, so two first callers get one lock, and
    an unpickled or deep-copied optimizer (whose ``__dict__`` lacks it) makes its own.
    Re-entrant: a closure may step the optimizer again (line searches)."""
    lock = opt.__dict__.get("_step_lock")
    return lock if lock is not None else opt.__dict__.setdefault("_step_lock",
                                                                 threading.RLock())


def serialised(step: Callable) -> Callable:
    """``Optimizer.step`` under the optimizer's step lock."""
    @functools.wraps(step)
    def locked(opt, *args, **kwargs):
        with step_lock(opt):
            return step(opt, *args, **kwargs)
    locked.serialised = True
    return locked


@dataclass
class Bucket:
    """Same device, dtype and step: one launch of each kernel."""

    launcher: object
    params: list
    labels: "Labels"  # labels[j]: "parameter i of group k" for params[j]
    grads: list
    states: list[list]  # one list per name of plan.states, aligned with params
    scalars: tuple
    step: float
    pre: tuple | None  # (pre-stage launcher, its scalars)
    prepared: object = None  # what the launcher's check derived, reused by its launch


@dataclass
class GroupStep:
    """What one param group's step will do; nothing of it is visible until ``apply``."""

    index: int
    group: dict
    compiled: object
    buckets: list[Bucket]
    fresh: dict  # param -> {state name: new tensor}, installed by apply
    reduced: dict | None = None
    skipped: bool = False  # a non-finite gradient (skip_nonfinite)
    on_commit: list[Callable] = field(default_factory=list)  # fn(work), after apply


class Labels:
    """``labels[j]``: "parameter i of group k" for a bucket's j-th parameter, made only
    when an error needs it (hundreds of f-strings per step would be a visible cost)."""

    def __init__(self, indices: list[int], group: int):
        self.indices, self.group = indices, group

    def __getitem__(self, j: int) -> str:
        return f"parameter {self.indices[j]} of group {self.group}"

    def __len__(self) -> int:
        return len(self.indices)


def collect(opt, index: int, group: dict, given: dict) -> GroupStep | None:
    """The group's buckets and the states its new parameters get (not installed)."""
    compiled = opt._compiled(group)
    decls = compiled.plan.states
    stored = frozenset(compiled.stored_names)
    hyper_values = opt.spec_of(group).hyper_values(group)
    found, fresh, states = defaultdict(list), {}, opt.state
    for i, p in enumerate(group["params"]):
        if p.grad is None:
            continue
        current = states.get(p)  # .get: opt.state is a defaultdict
        if not current:
            fresh[p] = current = new_state(decls, p, hyper_values)
        elif not current.keys() >= stored:  # a flag turned on later (amsgrad) adds a state
            fresh[p] = {name: new_state({name: decls[name]}, p, hyper_values)[name]
                        for name in stored - current.keys()}
        found[(p.device, p.dtype, float(current["step"]) + 1.0)].append((i, p))
    if not found:
        return None
    buckets = [_bucket(opt, index, compiled, hyper_values, given, fresh, key, members)
               for key, members in found.items()]
    return GroupStep(index, group, compiled, buckets, fresh)


def _bucket(opt, index, compiled, hyper_values, given, fresh, key, members) -> Bucket:
    device, dtype, step = key
    params = [p for _, p in members]
    plan, decls = compiled.plan, compiled.plan.states
    randoms = {name: draw(dist, opt.seed, index, step, name)
               for name, dist in plan.randoms.items()}
    # only the pre-stage writes into a buffer; the matrix stage hands over its own
    # result tensors, so its buffers need no placeholder (None until then)
    early = {r.name for r, _ in compiled.pre.plan.stores} if compiled.pre else set()

    def column(name):
        if name in given:
            return [given[name][p] for p in params]
        if decls[name].kind == "buffer":
            return ([torch.empty_like(p, dtype=storage_dtype(decls[name], p)) for p in params]
                    if name in early else [None] * len(params))
        if not fresh:  # the steady state: every state exists
            return [opt.state[p][name] for p in params]
        return [fresh[p][name] if p in fresh and name in fresh[p] else opt.state[p][name]
                for p in params]

    pre = ((opt._launcher(compiled.pre, device, dtype),
            compiled.pre.scalars(hyper_values, step, randoms)) if compiled.pre else None)
    return Bucket(opt._launcher(compiled, device, dtype), params,
                  Labels([i for i, _ in members], index),
                  [p.grad for p in params], [column(name) for name in decls],
                  compiled.scalars(hyper_values, step, randoms), step, pre)


def check(opt, work: GroupStep) -> None:
    """Everything the group's kernels will touch, before any kernel of the step runs."""
    stored = [(k, name, decl) for k, (name, decl) in
              enumerate(work.compiled.plan.states.items()) if decl.stored]
    for b in work.buckets:
        for j, p in enumerate(b.params):
            opt._check_param(p, b.labels, j, work.compiled)
        # numba and triton check every tensor their kernels touch (dtype, device, size)
        # in check() below; matrix states are the torch matrix stage's, checked here
        own = [s for s in stored if not b.launcher.checks_tensors or s[2].kind == "matrix"]
        for k, name, decl in own:
            for j, (p, value) in enumerate(zip(b.params, b.states[k])):
                if not (isinstance(value, torch.Tensor) and decl.kind == "state"
                        and value.shape == p.shape and value.device == p.device
                        and value.dtype == (p.dtype if decl.dtype is None
                                            else STORAGE_DTYPES[decl.dtype])):
                    _check_state(name, decl, p, value, opt, b.labels[j])  # explains
        # what the launcher derived (its address tables) is reused by the launch
        b.prepared = b.launcher.check(b.params, b.grads, b.states, b.labels)
        if b.pre is not None:
            b.pre[0].check(b.params, b.grads, b.states, b.labels)


def _check_state(name, decl, p, value, opt, label) -> None:
    """A stored state: a tensor of the right shape, storage dtype and device."""
    ok = isinstance(value, torch.Tensor)
    want = p.shape if decl.kind != "matrix" else matrix_shape(decl, p)
    if ok:
        dtype = p.dtype if decl.dtype is None else STORAGE_DTYPES[decl.dtype]
        ok = value.shape == want and value.dtype == dtype and value.device == p.device
    if not ok:
        shown = (f"{tuple(value.shape)} {value.dtype} on {value.device}"
                 if isinstance(value, torch.Tensor) else f"a {type(value).__name__}")
        raise RuntimeError(f"{type(opt).__name__}: {label}: state {name!r} is {shown}; the "
                           f"step needs {tuple(want)} {storage_dtype(decl, p)} on {p.device}")


def reduce(opt, work: GroupStep) -> None:
    """The reduce stages over all buckets (group scopes span them; they write nothing),
    the non-finite check, and the matrix stage's run-time argument checks."""
    plan = work.compiled.plan
    if plan.reductions or plan.matrix_stages:
        work.reduced = {p: () for b in work.buckets for p in b.params}
    for k, stage in enumerate(plan.reduce_stages):
        partials = []
        for b in work.buckets:
            parts = from_shapes(stage.reductions, b.params, compute_dtype)
            if parts is None:
                parts = b.launcher.reduce(k, b.params, b.grads, b.states, b.scalars,
                                          [work.reduced[p] for p in b.params])
            partials += zip(b.params, parts)
        for p, values in finish(stage.reductions, partials).items():
            work.reduced[p] += values
        if k == 0 and plan.nonfinite_check is not None:
            at = [r.result for r in stage.reductions].index(plan.nonfinite_check)
            if float(work.reduced[work.buckets[0].params[0]][at]) > 0:
                work.skipped = True
                return
    if plan.matrix_stages:  # out-of-range run-time scalars raise before any write
        checker = work.compiled.launcher(BACKENDS["torch"])
        for b in work.buckets:
            checker.matrix_check(0, b.params, b.grads, b.states, b.scalars,
                                 [work.reduced[p] for p in b.params])


def apply(opt, work: GroupStep) -> None:
    """The writes: new states, pre-stage, matrix stage, elementwise kernel, commit."""
    if work.skipped:
        work.group[SKIP_COUNTER] = work.group.get(SKIP_COUNTER, 0) + 1
    else:
        for p, states in work.fresh.items():
            if states:
                opt.state[p].update(states)
        for b in work.buckets:
            _apply_bucket(opt, work, b)
    for fn in work.on_commit:
        fn(work)


def _apply_bucket(opt, work: GroupStep, b: Bucket) -> None:
    plan = work.compiled.plan
    reduced = [work.reduced[p] for p in b.params] if work.reduced is not None else None
    if b.pre is not None:  # fills the pre<i> buffers (and steps states nothing else reads)
        b.pre[0](b.params, b.grads, b.states, b.pre[1])
    new_matrices = opt._matrix_stage(work.compiled, b.params, b.grads, b.states, b.scalars,
                                     reduced) if plan.matrix_stages else {}
    kwargs = {"reduced": reduced} if plan.reductions else {}
    if b.prepared is not None:
        kwargs["prepared"] = b.prepared
    b.launcher(b.params, b.grads, b.states, b.scalars, **kwargs)
    for p in b.params:  # only after the kernel succeeded
        opt.state[p]["step"].fill_(b.step)
    for name, values in new_matrices.items():
        for p, value in zip(b.params, values):
            opt.state[p][name].copy_(value)
