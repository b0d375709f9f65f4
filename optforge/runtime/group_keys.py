"""Which param-group keys a rule reads, and what a group inherits from the constructor.

torch lets any key into a param group, and code relies on that: schedulers write
``initial_lr``, ``max_lr``, ``base_momentum``...; users tag groups with ``name``. A key
that no rule reads is usually a typo (``weight_decy``) or a setting meant for another
optimizer (OneCycleLR's ``momentum`` in an AdamW group), silently ignored by torch. Here
such a key is a warning naming the key and the group, once per group and key: when the
group is added, and when something (a scheduler, the user) writes it later (checked at
each step, a set difference over a dozen keys).

A group with its own ``"rule"`` starts from that rule's defaults (not the optimizer's
rule's) and takes the hyperparameters given to the constructor that the rule shares, as
a torch group takes the constructor's defaults: ``optforge.Muon(groups, weight_decay=0.01)``
applies weight decay in an AdamW-routed group too. The storage options that mean the
same for every rule (``state_dtype``, ``rounding``, ``param_rounding``: see
runtime/storage_options.py) are inherited the same way; ``state_dtypes`` names one rule's
states and is not. They are read keys, never warned about.
"""
from __future__ import annotations

import warnings

from .torch_args import IMPL_FLAGS

# keys torch, its schedulers and common training code put into param groups, whether or
# not a rule reads them (schedulers: LRScheduler, OneCycleLR, CyclicLR, SWALR)
BENIGN_KEYS = frozenset({
    "params", "param_names", "name", "rule", "lr", "initial_lr", "max_lr", "min_lr",
    "base_momentum", "max_momentum", "swa_lr", *IMPL_FLAGS,
})


def unread_keys(group: dict, readable) -> list[str]:
    """The group's keys that nothing reads: not a hyperparameter of its rule (or an alias
    of one, ``readable``), not an implementation flag, not a key torch's schedulers add."""
    return sorted(k for k in group if k not in readable and k not in BENIGN_KEYS)


def warn_unread(owner: str, rule: str, where: str, keys: list[str], known) -> None:
    """One warning naming the keys no rule reads, the group and what the rule does read."""
    warnings.warn(f"{owner} ({rule}): {where} has key(s) {keys} that rule {rule} does not "
                  f"read (a typo? a setting of another optimizer?); its hyperparameters: "
                  f"{sorted(known)}", UserWarning, stacklevel=4)


def inherited(constructor_hyper: dict, shared_keys) -> dict:
    """The constructor's values a routed group's rule shares: its hyperparameters of the
    same name (and the storage options every rule takes, ``shared_keys`` holds both)."""
    return {k: v for k, v in constructor_hyper.items() if k in shared_keys}


_NONE_SEEN: dict = {}  # (never written: seen_keys makes the optimizer's own)


def seen_keys(opt, index: int) -> set:
    """The keys of group ``index`` already looked at (warned about, or known at add)."""
    return opt.__dict__.setdefault("_warned_keys", {}).setdefault(index, set())


def warn_new_keys(opt) -> None:
    """Keys written into a group after it was added (a scheduler's ``momentum`` in a
    group whose rule has none, a hand-set typo): warned once per group and key."""
    known = opt.__dict__.get("_warned_keys", _NONE_SEEN)
    for index, group in enumerate(opt.param_groups):
        seen = known.get(index)
        if seen is not None and group.keys() <= seen:
            continue  # the common case, a C-level set test: nothing new since last step
        seen = seen_keys(opt, index)
        spec = opt.spec_of(group)
        new = [k for k in unread_keys(group, opt._readable_keys(spec)) if k not in seen]
        seen.update(group)
        if new:
            warn_unread(type(opt).__name__, spec.name, f"param group {index}", new,
                        spec.defaults)
