"""Parameter routing: which rule a param group runs.

A param group may carry ``"rule"``: a rule function, a ``RuleSpec``, a catalogue class
(``optforge.AdamW``) or a catalogue name (``"AdamW"``); its other keys are that rule's
hyperparameters. One optimizer can then hold Muon for 2-D hidden weights and AdamW for
biases, norms and embeddings::

    opt = optforge.Muon(optforge.split_matrix_params(model, other=optforge.AdamW,
                                                      lr=3e-4), lr=0.02)
"""
from __future__ import annotations

from typing import Iterable

import torch

from ..dsl import names
from ..dsl.spec import RuleSpec

RULE_KEY = "rule"


def resolve_rule(value, where: str) -> RuleSpec:
    """The RuleSpec a ``"rule"`` entry names."""
    if isinstance(value, RuleSpec):
        return value
    if isinstance(value, str):
        found = names.lookup(value)
        if found is None:
            raise ValueError(f"{where}: rule {value!r} is not in the catalogue or registered "
                             f"with optforge.register_rule (known: "
                             f"{', '.join(names.known_names())})")
        return found
    spec = getattr(value, "rule", None)
    if isinstance(spec, RuleSpec):  # a catalogue class
        return spec
    if callable(value):
        return _specs.setdefault(value, RuleSpec(value))
    raise TypeError(f"{where}: \"rule\" must be a rule function, a RuleSpec, a catalogue "
                    f"class or name, got {type(value).__name__}")


_specs: dict = {}  # one RuleSpec per plain rule function, so compiled kernels are shared


def register_rule(rule, name: str | None = None):
    """Register a rule function (or RuleSpec) under ``name`` (default: its own name), so
    that a param group's ``"rule"`` is saved as that name and a checkpoint loads with
    ``torch.load(..., weights_only=True)``; returns ``rule``, so it works as a decorator."""
    spec = resolve_rule(rule, "register_rule")
    names.register(spec.name if name is None else name, spec)
    return rule


def rule_name(value) -> str | None:
    """The name under which a ``"rule"`` entry resolves again: a registered name, else a
    catalogue name, else None (an unregistered function)."""
    if isinstance(value, str):
        return value
    return names.name_of(resolve_rule(value, "rule_name").fn)


def split_matrix_params(model_or_params, other="AdamW", exclude: Iterable = (), **other_hyper):
    """Two param groups: parameters with 2 or more dimensions (for a matrix rule such as
    Muon) and the rest (biases, norms, and everything in ``exclude``, e.g. embeddings
    and the output head) with rule ``other`` and hyperparameters ``other_hyper``."""
    params = (model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module)
              else model_or_params)
    skip = {id(p) for p in exclude}
    matrices, rest = [], []
    for p in params:
        if not p.requires_grad:
            continue
        (matrices if p.dim() >= 2 and id(p) not in skip else rest).append(p)
    groups = [{"params": matrices}] if matrices else []
    if rest:
        groups.append({"params": rest, RULE_KEY: other, **other_hyper})
    return groups
