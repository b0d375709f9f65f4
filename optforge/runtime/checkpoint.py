"""Checkpoints: torch-layout state dicts that name their rules, loaded all or nothing.

``save`` turns ``Optimizer.state_dict()`` into something ``torch.load(...,
weights_only=True)`` and torch.optim can read: a group's ``"rule"`` becomes its name
(catalogue or ``register_rule``), and the few keys and states torch's twin of a
catalogue optimizer reads unconditionally are added.

``load`` checks the whole state dict against the optimizer first (group count and
sizes, hyperparameters, every parameter's declared states with shape and dtype, a
finite non-negative ``step``) and only then lets torch install it, so a bad checkpoint
raises an error naming the group, parameter and key, and leaves the optimizer exactly
as it was. torch.optim's own checkpoints load as they are: states torch has not
created yet, and a ``step`` its SGD and Muon do not keep (see ``check_state``).
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from contextlib import contextmanager

import torch

from ..dsl import names
from ..dsl.rule import Rule
from ..dsl.symbols import StepSymbol
from .routing import RULE_KEY, rule_name
from ..compiler.quant_format import parse
from . import quantized_states
from .state import new_state, restore_dtypes, state_shape, storage_dtype
from .storage_options import STORAGE_KEYS, carry_over, stored_rule
from ..compiler.storage import KAHAN_STATE

# Catalogue rules that read the step count only to tell the first step from later ones,
# and whose torch.optim twin keeps no "step": a loaded state that holds its tensors has
# stepped, so the count resumes at 1 (torch.optim.SGD copies the first gradient into the
# buffer undamped and applies dampening from then on; optforge's SGD does so at t > 1).
FIRST_STEP_ONLY = {"SGD"}
# Catalogue rules whose torch twin creates every parameter's state in its constructor
# and reads it unconditionally at each step (torch.optim.Adagrad: KeyError 'sum' for a
# parameter without one): their checkpoints carry a fresh state for unstepped parameters.
EAGER_STATE = {"Adagrad"}
# torch group keys that are a hyperparameter of ours under another name:
# catalogue name -> (torch key, our key, {torch value: our value}).
TORCH_KEYS = {"Muon": ("adjust_lr_fn", "match_rms_adamw",
                       {None: False, "original": False, "match_rms_adamw": True})}


def catalogue_name(spec) -> str | None:
    """The name of the catalogue class whose rule this is (also given as its function)."""
    return names.catalogue_name(spec.fn)


def reads_step(rule: Rule) -> bool:
    """Whether the rule's math depends on the step count (random scalars are drawn per step)."""
    return bool(rule.randoms) or any(isinstance(s, StepSymbol) for e in rule.outputs().values()
                                     for s in e.free_symbols)


# ---- saving ---------------------------------------------------------------------------
def save(opt, state_dict: dict) -> dict:
    """Name the groups' rules and add what torch's twin needs (in place; returns it)."""
    for group, saved in zip(opt.param_groups, state_dict["param_groups"]):
        if RULE_KEY in saved:
            # an unregistered function cannot be named: it stays (pickle and
            # weights_only=False load it; register_rule makes it weights_only-safe)
            saved[RULE_KEY] = rule_name(saved[RULE_KEY]) or saved[RULE_KEY]
        spec = opt.spec_of(group)
        name = catalogue_name(spec)
        if name in TORCH_KEYS:
            theirs, ours, values = TORCH_KEYS[name]
            if theirs not in spec.defaults:  # always from ours: it may have changed since load
                saved[theirs] = next(k for k, v in values.items()
                                     if v == bool(saved[ours]) and k is not None)
        _fill_states(spec, group, saved["params"], state_dict["state"], name in EAGER_STATE)
        quantized_states.to_checkpoint(stored_rule(spec, group).states, group, group["params"],
                                       saved["params"], state_dict["state"])
    return state_dict


def _fill_states(spec, group: dict, keys: list, states: dict, eager: bool) -> None:
    """Add the states the next step would create, so the checkpoint is complete: those of
    a flag turned on since the last step (amsgrad's max_exp_avg_sq; torch would raise
    KeyError, our load would refuse), and with ``eager`` whole fresh states."""
    decls = stored_rule(spec, group).states
    hyper = None
    for p, key in zip(group["params"], keys):
        state = states.get(key)
        if not state and not eager:
            continue  # never stepped: created at its first step, by either library
        missing = {n: d for n, d in decls.items() if d.stored and n not in (state or {})}
        if missing:
            hyper = hyper or spec.hyper_values(group)
            fresh = new_state(missing, p, hyper)
            # a new dict: the packed state's values are the optimizer's own dicts
            states[key] = {**(state or {"step": fresh["step"]}),
                           **{n: fresh[n] for n in missing}}


# ---- loading --------------------------------------------------------------------------
def load(opt, state_dict: dict, torch_load) -> None:
    """Check ``state_dict`` completely, then install it with ``torch_load`` (torch's
    ``Optimizer.load_state_dict``); any error restores the optimizer as it was."""
    state_dict = state_dict.copy()  # as torch does: pre-hooks may edit the top level
    for hook in list(_hooks(opt, "pre").values()):
        result = hook(opt, state_dict)
        state_dict = state_dict if result is None else result
    fixes = check(opt, state_dict)
    before = dict(opt.__dict__)
    post = list(_hooks(opt, "post").values())
    try:
        with _hooks_set_aside(opt):  # ran above / run below, around our own work
            torch_load(state_dict)
        for group, (completed, states) in zip(opt.param_groups, fixes):
            _finish_group(opt, group, completed, states)
    except BaseException:
        opt.__dict__.clear()
        opt.__dict__.update(before)
        raise
    for hook in post:
        hook(opt)


def _hooks(opt, kind: str) -> OrderedDict:
    return opt.__dict__.get(f"_optimizer_load_state_dict_{kind}_hooks", OrderedDict())


@contextmanager
def _hooks_set_aside(opt):
    names = [f"_optimizer_load_state_dict_{kind}_hooks" for kind in ("pre", "post")]
    kept = {n: opt.__dict__[n] for n in names if n in opt.__dict__}
    opt.__dict__.update({n: OrderedDict() for n in names})
    try:
        yield
    finally:
        opt.__dict__.update(kept)


def check(opt, state_dict) -> list[tuple[dict, dict]]:
    """Per group: (the loaded group completed with defaults, {param: its checked state's
    declarations and whether to infer its step, or None to drop it}). Changes nothing."""
    cls = type(opt).__name__
    if not (isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict)
            and isinstance(state_dict.get("param_groups"), (list, tuple))):
        raise ValueError(f"{cls}: not an optimizer state dict (expected a dict with 'state', "
                         "a dict, and 'param_groups', a list)")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(f"loaded state dict has a different number of parameter groups: "
                         f"{len(saved_groups)} saved, {len(opt.param_groups)} in this {cls}")
    fixes = []
    for gi, (group, saved) in enumerate(zip(opt.param_groups, saved_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
            raise ValueError(f"{cls}: loaded param group {gi} is not a dict with 'params'")
        if len(saved["params"]) != len(group["params"]):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             f"the size of optimizer's group: group {gi} has "
                             f"{len(saved['params'])} parameters saved, {len(group['params'])} "
                             f"in this {cls}")
        completed, spec = complete_group(opt, group, saved, gi)
        rule = stored_rule(spec, completed)
        states = {}
        for i, (key, p) in enumerate(zip(saved["params"], group["params"])):
            if key in state_dict["state"]:
                where = f"{cls}: parameter {i} of group {gi}"
                rule_p = quantized_states.rule_for(rule, completed, p)  # small: float32
                state = _unpack_8bit(state_dict, key, rule_p, p, where)
                states[p] = check_state(rule_p, spec, p, state, where)
        fixes.append((completed, states))
    return fixes


def _unpack_8bit(state_dict: dict, key, rule, param, where: str):
    """A parameter's loaded state with its saved 8-bit states (codes, scales, format) as
    this optimizer will check and store them (runtime/quantized_states.py). A converted
    state goes into a copy of ``state_dict["state"]`` (``load``'s own top-level copy)."""
    loaded = state_dict["state"][key]
    if not isinstance(loaded, dict):
        return loaded  # check_state explains
    try:
        state = quantized_states.from_checkpoint(rule, param, loaded)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if state is not loaded:
        state_dict["state"] = {**state_dict["state"], key: state}
    return state


def complete_group(opt, group: dict, saved: dict, gi: int):
    """A copy of a loaded group as it will run: its rule (the current group's when the
    checkpoint names none: torch's checkpoints never do), torch keys translated,
    missing hyperparameters at the rule's defaults, values checked. Returns (group, spec)."""
    completed = dict(saved)
    if RULE_KEY not in completed and RULE_KEY in group:
        completed[RULE_KEY] = group[RULE_KEY]
    elif RULE_KEY in group and rule_name(group[RULE_KEY]) == completed.get(RULE_KEY):
        completed[RULE_KEY] = group[RULE_KEY]  # the same rule: keep the object it was given as
    where = f"{type(opt).__name__}: loaded param group {gi}"
    try:
        spec = opt.spec_of(completed)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    _from_torch_keys(spec, completed, where)
    carry_over(group, completed)
    for key, default in spec.defaults.items():  # e.g. a checkpoint of torch or another rule
        completed.setdefault(key, default)
    opt.check_group(completed, f"loaded param group {gi}")
    return completed, spec


def _from_torch_keys(spec, group: dict, where: str) -> None:
    """Set our name of a hyperparameter a torch checkpoint saved under torch's (TORCH_KEYS)."""
    translation = TORCH_KEYS.get(catalogue_name(spec))
    if not translation:
        return
    theirs, ours, values = translation
    if theirs in spec.defaults or ours in group or theirs not in group:
        return  # ours already, or nothing to translate
    value = group[theirs]
    if not (value is None or isinstance(value, str)) or value not in values:
        raise ValueError(f"{where}: {theirs}={value!r}; {spec.name} knows "
                         f"{', '.join(map(repr, values))}")
    group[ours] = values[value]


def check_state(rule: Rule, spec, param, state, where: str):
    """Check one parameter's loaded state; returns (declarations, infer step) or None for
    a state torch has not created yet (all values None: torch.optim.SGD before torch 2
    saved ``momentum_buffer: None``), which starts fresh at the next step, as in torch."""
    if not isinstance(state, dict):
        raise ValueError(f"{where}: its state is a {type(state).__name__}, not a dict")
    if all(v is None for v in state.values()):
        return None
    decls = {name: d for name, d in rule.states.items() if d.stored}
    for name, decl in decls.items():
        if state.get(name) is None and name == KAHAN_STATE:
            continue  # a checkpoint of uncompensated updates: the next step starts it at 0
        if state.get(name) is None:
            # re-created at its initial value it would silently restart (with a zeroed
            # second moment, Adam's next step is several times lr)
            raise ValueError(f"{where}: state {name!r} is missing from the checkpoint (it has "
                             f"{sorted(map(str, state))}); rule {spec.name!r} needs it")
        _check_tensor(decl, param, state[name], f"{where}: state {name!r}")
    if state.get("step") is not None:
        _check_step(state["step"], where)
        return decls, False
    if reads_step(rule) and catalogue_name(spec) not in FIRST_STEP_ONLY:
        raise ValueError(f"{where}: state 'step' is missing from the checkpoint; rule "
                         f"{spec.name!r} reads the step count (bias correction, schedules), "
                         "which cannot be inferred")
    return decls, True


def _check_tensor(decl, param, value, where: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where} is a {type(value).__name__}, not a tensor")
    if quantized_states.packed_state_ok(decl, param, value):
        return  # an 8-bit state saved in the format this optimizer stores it in
    # an 8-bit state may come as float values in the parameter's shape (quantized on load)
    want = tuple(param.shape) if parse(decl.dtype) else state_shape(decl, param)
    if tuple(value.shape) != want:
        raise ValueError(f"{where} has shape {value.shape}, but {want} is expected "
                         f"(parameter {tuple(param.shape)})")
    if not value.is_floating_point():  # torch would cast it silently (complex: drop imag)
        raise ValueError(f"{where} has dtype {value.dtype}; a floating-point tensor is "
                         f"expected ({storage_dtype(decl, param)})")


def _check_step(value, where: str) -> None:
    number = None
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and (value.is_floating_point() or value.dtype in
                                   (torch.int64, torch.int32, torch.int16, torch.int8)):
            number = float(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(f"{where}: state 'step' = {value!r}; a finite, non-negative step "
                         "count is expected")


def _finish_group(opt, group: dict, completed: dict, states: dict) -> None:
    """After torch installed the checked dict: what ``check`` decided (cannot fail)."""
    for key, value in completed.items():
        # storage options are this process's choice (storage_options.carry_over): torch's
        # loader installed the saved group's, so the completed group's are put back
        if key not in group or key == RULE_KEY or key in STORAGE_KEYS:
            group[key] = value
    for p, checked in states.items():
        if checked is None:
            del opt.state[p]
            continue
        decls, infer = checked
        if infer:  # the states exist, so it has stepped (see FIRST_STEP_ONLY)
            opt.state[p]["step"] = torch.tensor(1.0, dtype=torch.float32)
        restore_dtypes(decls, p, opt.state[p])
