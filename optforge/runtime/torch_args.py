"""torch.optim's constructor conventions: its implementation flags and its range checks.

The flags (``foreach``, ``fused``, ``capturable``, ``differentiable``) choose between
torch's implementations; optforge always runs one fused kernel per bucket, so
``foreach``/``fused``/``capturable`` change nothing, but they are accepted, validated and
kept in ``param_groups`` as torch keeps them, because code reads ``group["foreach"]``.
``differentiable=True`` runs the torch backend with autograd on (see Optimizer.step).

The range checks raise torch's own messages ("Invalid learning rate: -1.0"), prefixed
with the optimizer's name, so code and tests that match torch's errors keep working.
"""
from __future__ import annotations

import math
import numbers

import torch

# every flag torch's optimizers know, with torch's default
IMPL_FLAGS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}

# hyperparameter -> the start of torch's message when it is negative
NON_NEGATIVE = {
    "lr": "Invalid learning rate",
    "eps": "Invalid epsilon value",
    "weight_decay": "Invalid weight_decay value",
    "momentum": "Invalid momentum value",
    "lr_decay": "Invalid lr_decay value",
    "alpha": "Invalid alpha value",
    "initial_accumulator_value": "Invalid initial_accumulator_value value",
}


def check_flags(group: dict, flags: dict, name: str) -> None:
    """The group's implementation flags: types, and torch's incompatible pairs."""
    for key in flags:
        if key not in group or key not in IMPL_FLAGS:  # (a class checks its own extras)
            continue
        value = group[key]
        optional = IMPL_FLAGS[key] is None  # foreach/fused may be None
        if not (isinstance(value, bool) or (optional and value is None)):
            kind = "a bool or None" if optional else "a bool"
            raise ValueError(f"{name}: {key}={value!r}: expected {kind}")
    if group.get("fused"):
        # torch's own messages and order (torch.optim.Adam.__init__)
        if group.get("differentiable"):
            raise RuntimeError(f"{name}: `fused` does not support `differentiable`")
        if group.get("foreach"):
            raise RuntimeError(f"{name}: `fused` and `foreach` cannot be `True` together.")


def _elements(key: str, value) -> list[tuple[str, object]]:
    """(label, value) for a hyperparameter and, for a tuple, each of its elements."""
    if isinstance(value, (tuple, list)):
        return [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    return [(key, value)]


def check_tensor_sizes(group: dict, keys, name: str) -> None:
    """A tensor hyperparameter holds one number: "Tensor lr must be 1-element"."""
    for key in keys:
        for label, value in _elements(key, group[key]):
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"{name}: Tensor {label} must be 1-element")


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value)
    return None


def check_ranges(group: dict, keys, name: str) -> None:
    """torch's range checks, for the hyperparameters a rule has under torch's names."""
    for key in keys:
        value = group[key]
        if key in NON_NEGATIVE:
            number = _number(value)
            if number is not None and not number >= 0.0:
                raise ValueError(f"{name}: {NON_NEGATIVE[key]}: {value}")
        elif key == "betas" and isinstance(value, (tuple, list)):
            for i, beta in enumerate(value):
                number = _number(beta)
                if number is not None and not 0.0 <= number < 1.0:
                    raise ValueError(f"{name}: Invalid beta parameter at index {i}: {beta}")


def check_types(group: dict, defaults: dict, name: str, where: str) -> None:
    """Each hyperparameter has its default's kind: a bool, a tuple of as many finite
    numbers, or a finite number; None where the default is None ("off"), an infinity
    where the default is one (RuleSpec makes both structural)."""
    for key, default in defaults.items():
        value = group[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "a bool"
        elif isinstance(default, tuple):
            ok = (isinstance(value, (tuple, list)) and len(value) == len(default)
                  and all(is_finite_number(x) for x in value))
            expected = f"a tuple of {len(default)} finite numbers"
        elif default is None:
            ok, expected = value is None or is_finite_number(value), "None or a finite number"
        elif math.isinf(default):
            number = _number(value)
            ok = number is not None and not math.isnan(number)
            expected = "a number (infinities allowed)"
        else:
            ok, expected = is_finite_number(value), "a finite number"
        if not ok:
            raise ValueError(f"{name}: hyperparameter {key!r} = {value!r} in {where}: "
                             f"expected {expected}")


def check_intervals(group: dict, keys, name: str, where: str) -> None:
    """Hyperparameters a rule uses as every(k, ...)'s interval: whole numbers >= 1."""
    for key in keys:
        number = _number(group[key])
        if number is None or not (1 <= number < math.inf and number == int(number)):
            raise ValueError(f"{name}: {key}={group[key]!r} in {where}: every(k, ...)'s "
                             "interval k must be a whole number >= 1")


def check_aliases(group: dict, aliases: dict, name: str, where: str) -> None:
    """A ``momentum`` standing for ``betas[0]`` (RuleSpec.aliases) is a beta: a finite
    number in [0, 1), checked as torch checks betas."""
    for alias, (key, index) in aliases.items():
        if alias not in group:
            continue
        number = _number(group[alias])
        if number is None or not (math.isfinite(number) and 0.0 <= number < 1.0):
            raise ValueError(f"{name}: {alias}={group[alias]!r} in {where} stands for "
                             f"{key}[{index}] (torch's schedulers cycle it): Invalid beta "
                             f"parameter at index {index}: {group[alias]}")


def check_differentiable(group: dict, keys, name: str) -> None:
    """With differentiable=True, a hyperparameter that requires grad would silently get
    none: the kernels take hyperparameters as numbers. Refuse it."""
    if not group.get("differentiable"):
        return
    for key in keys:
        for label, value in _elements(key, group[key]):
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise ValueError(f"{name}: differentiable=True with {label} a tensor that "
                                 "requires grad: optforge passes hyperparameters to its "
                                 "kernels as numbers, so no gradient would reach it; detach "
                                 "it or use torch.optim")


def is_finite_number(value) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def fused_devices() -> list[str]:
    """The device types torch's ``fused=True`` accepts (its error message lists them)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    return _get_fused_kernels_supported_devices()
