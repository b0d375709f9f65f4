"""What a copy of an optimizer keeps: ``copy.deepcopy`` and ``pickle`` support.

torch's ``Optimizer.__getstate__`` keeps only ``defaults``, ``state`` and
``param_groups``, which loses optforge's own attributes (``spec``, ``backend``, ``seed``,
``skip_nonfinite``, a subclass's settings); the copy then fails at its first step. Here a
copy keeps every instance attribute except what belongs to one process or one object
graph: launcher caches (rebuilt on demand), locks (made lazily), torch's hook dicts
(torch's own copies drop them too) and the layer-statistics hooks of ``attach(model)``
(they hold the original model: attach the copy to its own model).
"""
from __future__ import annotations

import threading

from ..dsl.spec import RuleSpec

# attributes rebuilt on demand, never copied
TRANSIENT = frozenset({"_launcher_cache", "_compiled_variants", "_stepped"})
# torch re-creates these (empty) in Optimizer.__setstate__, as its own copies do
TORCH_HOOKS = frozenset({
    "_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks"})
DETACHED = ("layer_stats",)  # set to None in the copy: re-attach to the copy's model
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class _SpecRef:
    """A picklable stand-in for a RuleSpec: its function (pickled by reference) and name.

    The compiled-rule cache is keyed by the function, so the rebuilt spec reuses the
    kernels this process already has."""

    def __init__(self, spec: RuleSpec):
        self.fn, self.name = spec.fn, spec.name

    def resolve(self, owner_cls) -> RuleSpec:
        own = getattr(owner_cls, "rule", None)  # a catalogue class: its shared spec
        if isinstance(own, RuleSpec) and own.fn is self.fn and own.name == self.name:
            return own
        return RuleSpec(self.fn, name=self.name)


def _kept(key: str, value) -> bool:
    return (key not in TRANSIENT and key not in TORCH_HOOKS and key not in DETACHED
            and not isinstance(value, _LOCK_TYPES))


def get_state(opt) -> dict:
    """The optimizer's attributes that a copy keeps (``spec`` as a _SpecRef)."""
    state = {k: v for k, v in opt.__dict__.items() if _kept(k, v)}
    state["spec"] = _SpecRef(opt.spec)
    for key in DETACHED:
        if key in opt.__dict__:
            state[key] = None
    return state


def restore_spec(opt) -> None:
    """After ``__dict__`` was filled from get_state: the RuleSpec back from its ref."""
    if isinstance(opt.__dict__.get("spec"), _SpecRef):
        opt.spec = opt.spec.resolve(type(opt))
