"""Look-ups by name, for code that picks its optimizer from a config string.

``optforge.get("adamw")`` is the catalogue class (any case, ``-``/``_`` ignored), as
pytorch-optimizer's ``load_optimizer``; ``optforge.create_optimizer(model, "adamw",
lr=1e-3, weight_decay=0.01)`` also builds it, with no weight decay on biases and norms,
as pytorch-optimizer's ``create_optimizer`` and most training scripts do.
"""
from __future__ import annotations

import torch

from .catalogue import REGISTRY
from .catalogue.families import did_you_mean


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get(name: str):
    """The catalogue optimizer class called ``name`` (``"AdamW"``, ``"adamw"``, ``"lion"``)."""
    if not isinstance(name, str):
        raise TypeError(f"optforge.get: expected a name, got {type(name).__name__}")
    by_key = {_key(n): cls for n, cls in REGISTRY.items()}
    found = by_key.get(_key(name))
    if found is None:
        raise ValueError(f"optforge.get: no catalogue optimizer {name!r}"
                         f"{did_you_mean(name, REGISTRY)}; `optforge list` shows them all")
    return found


def param_groups(model: torch.nn.Module, weight_decay: float,
                 no_decay=("bias", "norm")) -> list[dict]:
    """Two groups: parameters whose name contains one of ``no_decay`` (any case) or that
    have one dimension (biases, norm scales) get ``weight_decay=0``; the rest get
    ``weight_decay``. Frozen parameters (``requires_grad=False``) are left out."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.dim() <= 1 or any(s.lower() in name.lower() for s in no_decay)
        (keep if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}] if decay else []
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    return groups


def create_optimizer(model: torch.nn.Module, name: str, no_decay=("bias", "norm"), **hyper):
    """``get(name)`` built on ``model``; with ``weight_decay`` given, biases, norms and any
    parameter named like ``no_decay`` are exempt from it (see ``param_groups``)."""
    cls = get(name)
    if "weight_decay" not in hyper:
        return cls(model.parameters(), **hyper)
    if "weight_decay" not in cls.rule.defaults:
        raise TypeError(f"optforge.create_optimizer: {cls.__name__} has no weight_decay "
                        f"hyperparameter; its hyperparameters: {', '.join(cls.rule.defaults)}")
    weight_decay = hyper.pop("weight_decay")
    return cls(param_groups(model, weight_decay, no_decay), **hyper)
