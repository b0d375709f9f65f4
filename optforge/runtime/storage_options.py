"""The user's storage options as param-group keys.

``optforge.AdamW(params, state_dtype="bfloat16", rounding="stochastic")``, or per group
(``{"params": ..., "state_dtypes": {"exp_avg": "bfloat16"}}``): the keys live in
``param_groups`` like hyperparameters, so checkpoints save them and schedulers and
tools see them; a group may set its own. They are structural: each resolved choice is a
compiled variant of its own (runtime/compiled.py), resolved here against the group's
rule (compiler/storage.py: the user's dtype wins over the rule author's).

* ``state_dtype``: storage dtype of every per-element state (None: the rule's own);
* ``state_dtypes``: ``{state name: dtype}``, overriding ``state_dtype`` per state;
* ``rounding``: "nearest" | "stochastic", for 16-bit state stores;
* ``param_rounding``: "nearest" | "stochastic" | "kahan", for 16-bit parameters;
* ``quant_block``: elements per absmax scale of 8-bit states (256);
* ``quant_min_numel``: tensors with fewer elements keep 8-bit states in float32 (4096).
"""
from __future__ import annotations

from ..compiler.quant_format import DEFAULT_BLOCK, SMALL_TENSOR
from ..compiler.storage import DEFAULT, StorageOptions, resolve, with_storage
from ..dsl.rule import Rule

STORAGE_KEYS = ("state_dtype", "state_dtypes", "rounding", "param_rounding", "quant_block",
                "quant_min_numel")
# the keys that mean the same for every rule: a group routed to another rule inherits
# them from the constructor (runtime/group_keys.py); state_dtypes names one rule's states
ANY_RULE_KEYS = ("state_dtype", "rounding", "param_rounding", "quant_block",
                 "quant_min_numel")


def options_of(spec, group: dict) -> StorageOptions:
    """The resolved options of a param group (the defaults when it sets none)."""
    if group.keys().isdisjoint(STORAGE_KEYS):  # (C-level: asked on every step)
        return DEFAULT
    return resolve(spec.build(spec.variant_of(group)), group.get("state_dtype"),
                   group.get("state_dtypes"), group.get("rounding", "nearest"),
                   group.get("param_rounding", "nearest"),
                   group.get("quant_block", DEFAULT_BLOCK))


def quantizes(options: StorageOptions, group: dict, numel: int) -> bool:
    """Whether a tensor of ``numel`` elements keeps this group's 8-bit states in 8 bits
    (smaller ones keep them in float32, as bitsandbytes does)."""
    return (any(d.startswith("q8") for _, d in options.state_dtypes)
            and numel >= group.get("quant_min_numel", SMALL_TENSOR))


def stored_rule(spec, group: dict) -> Rule:
    """The group's rule as its states are stored (the declarations checkpoints check)."""
    return with_storage(spec.build(spec.variant_of(group)), options_of(spec, group))


def check(spec, group: dict, owner: str, where: str) -> None:
    """Raise naming the key (and state) when a group's storage options are malformed or
    unknown to its rule; changes nothing."""
    dtype, per_state = group.get("state_dtype"), group.get("state_dtypes")
    if dtype is not None and not isinstance(dtype, str):
        raise ValueError(f"{owner}: state_dtype={dtype!r} in {where}: expected a dtype name "
                         "such as 'bfloat16', or None")
    if per_state is not None and not (isinstance(per_state, dict)
                                      and all(isinstance(k, str) for k in per_state)):
        raise ValueError(f"{owner}: state_dtypes={per_state!r} in {where}: expected a dict "
                         "{state name: dtype name}, or None")
    for key in ("rounding", "param_rounding"):
        if key in group and not isinstance(group[key], str):
            raise ValueError(f"{owner}: {key}={group[key]!r} in {where}: expected a string")
    minimum = group.get("quant_min_numel", SMALL_TENSOR)
    if type(minimum) is not int or minimum < 0:
        raise ValueError(f"{owner}: quant_min_numel={minimum!r} in {where}: expected a "
                         "non-negative int")
    try:
        options_of(spec, group)
    except ValueError as exc:
        raise ValueError(f"{owner}: {exc} (in {where})") from None


def carry_over(current: dict, loaded: dict) -> None:
    """Storage is this process's choice, not the checkpoint's: options the current group
    sets win over a loaded group's (an fp32 checkpoint loads into a bf16-state optimizer,
    its states rounded on load, and a bf16 one into ``state_dtype="float32"``); a loaded
    group's options apply where the current group sets none."""
    for key in STORAGE_KEYS:
        if key in current:
            loaded[key] = current[key]
