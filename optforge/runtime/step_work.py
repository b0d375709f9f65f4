"""What one ``Optimizer.step()`` carries between its stages (see runtime/stepping.py).

A ``GroupStep`` is one param group's step, built by the collect stage and consumed by
the later ones; its ``Bucket``s are the launches (same device, dtype and step count).
Nothing here is visible to the user until the commit stage has run.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Callable, Mapping


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


class Labels:
    """``labels[j]``: "parameter i of group k" for a bucket's j-th parameter, made only
    when an error needs it (hundreds of f-strings per step would be a visible cost)."""

    def __init__(self, indices: list[int], group: int):
        self.indices, self.group = indices, group

    def __getitem__(self, j: int) -> str:
        return f"parameter {self.indices[j]} of group {self.group}"

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(slots=True)
class Bucket:
    """Same device, dtype and step: one launch of each kernel.

    ``params``, ``grads`` and ``states`` are what the kernels address: the parameters
    themselves, or for a sharded (DTensor) parameter its local shard (runtime/shards.py).
    ``keys[j]`` is the parameter as the user holds it: the key of ``optimizer.state``,
    of the finished reductions and of the inputs."""

    launcher: object
    keys: list
    params: list
    labels: Labels  # labels[j]: "parameter i of group k" for params[j]
    grads: list
    states: list[list]  # one list per name of plan.states, aligned with params
    scalars: tuple
    step: float
    pre: tuple | None  # (pre-stage launcher, its scalars)
    prepared: object = None  # what the launcher's check derived, reused by its launch
    sharded: bool = False  # some parameter is a DTensor: its matrix stage is gathered
    # which parameters the kernels get: None for all; in a sharded bucket, those whose
    # local shard has elements (a rank may hold no rows of a small tensor)
    members: list[int] | None = None
    # the bucket's rule variant when not the group's (8-bit states: tensors too small to
    # quantize run the float32-state variant, runtime/quantized_states.py)
    compiled: object = None
    # each parameter's state dict as the step sees it (the installed one, or for a new
    # parameter the one install_states installs): commit writes ``step`` through them
    state_dicts: list[dict] | None = None

    def reduced(self, work: "GroupStep") -> list | None:
        """The finished reductions of each parameter, aligned with ``params``."""
        return None if work.reduced is None else [work.reduced[k] for k in self.keys]

    def kernel_args(self, work: "GroupStep | None" = None) -> tuple:
        """(params, grads, states, labels, reduced) for a kernel launch over ``members``."""
        reduced = None if work is None or work.reduced is None else \
            [work.reduced[k] for k in self.keys]
        if self.members is None:
            return self.params, self.grads, self.states, self.labels, reduced
        def pick(values):
            return None if values is None else [values[j] for j in self.members]
        return (pick(self.params), pick(self.grads), [pick(s) for s in self.states],
                Labels(pick(self.labels.indices), self.labels.group), pick(reduced))


@dataclass(slots=True)
class GroupStep:
    """What one param group's step will do; nothing of it is visible until commit."""

    index: int
    group: dict  # the param group itself (its skip counter is written at commit)
    hyper: Mapping  # the hyperparameter values this step's kernels read
    compiled: object
    buckets: list[Bucket]
    fresh: dict  # param -> {state name: new tensor}, installed before the first kernel
    reduced: dict | None = None  # param -> its finished reductions, in plan order
    skipped: bool = False  # a non-finite gradient (skip_nonfinite)
    matrix_turn: int = 0  # round-robin owner of the next gathered matrix (shards)
    scoped: dict | None = None  # param -> its scoped states' new values (scoped_states.py)
