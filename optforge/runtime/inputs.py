"""Tensors a rule reads beside the parameter and its gradient (``given(name)`` in the DSL).

An input comes from one of two places, looked up in this order:

1. the ``inputs`` argument of ``optimizer.step(closure, inputs={name: {param: tensor}})``
   (a second gradient the user computed: DOT's distillation gradient);
2. a *provider* registered here under the name, which the runtime calls each step
   (``register_provider``): e.g. a Hutchinson Hessian-diagonal estimate from the graph
   of the last ``backward(create_graph=True)``.

A missing input is an error naming the rule, the input and the parameter, never a
silently zero tensor.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

# name -> provider(optimizer, group, params, closure) -> one tensor per param (or None
# for "not this step": the rule then cannot run and the error says why)
Provider = Callable[[torch.optim.Optimizer, dict, Sequence[torch.Tensor], Callable | None],
                    Sequence[torch.Tensor]]
PROVIDERS: dict[str, Provider] = {}


def register_provider(name: str, provider: Provider) -> None:
    """Make the runtime produce input ``name`` for every rule that reads ``given(name)``."""
    PROVIDERS[name] = provider


class InputError(RuntimeError):
    """An input a rule reads is missing or malformed."""


def _check(value, name: str, p: torch.Tensor, where: str, dtype: torch.dtype,
           shape: tuple = ()) -> torch.Tensor:
    """``shape`` empty: shaped like ``p``; else ("batch", "rows" | "cols") of p's 2-D view."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{where}: input {name!r} is a {type(value).__name__}, not a tensor")
    if shape:
        width = p.shape[0] if shape[1] == "rows" else p.numel() // max(p.shape[0], 1)
        if value.dim() != 2 or value.shape[1] != width:
            raise InputError(f"{where}: input {name!r} has shape {tuple(value.shape)}; "
                             f"(batch, {width}) is expected for a parameter {tuple(p.shape)}")
    elif value.shape != p.shape:
        raise InputError(f"{where}: input {name!r} has shape {tuple(value.shape)}, the "
                         f"parameter {tuple(p.shape)}")
    if not value.is_floating_point() or value.is_complex():
        raise InputError(f"{where}: input {name!r} has dtype {value.dtype}; a real floating "
                         "point tensor is needed")
    if value.device != p.device:
        raise InputError(f"{where}: input {name!r} is on {value.device}, the parameter on "
                         f"{p.device}")
    return value.detach().to(dtype).contiguous()


def gather(optimizer, group: dict, group_index: int, params: Sequence[torch.Tensor],
           decls: Mapping, closure, supplied: Mapping | None,
           optional: frozenset = frozenset()) -> dict[str, list[torch.Tensor]]:
    """One tensor per parameter for every input the plan reads, in the decl's dtype.

    ``optional``: results of the rule's collectives (runtime/collective_stage.py), taken
    from ``supplied`` when there (then nothing is communicated), else made by the step."""
    from .state import storage_dtype  # a sibling module; imported late to keep this light
    found: dict[str, list[torch.Tensor]] = {}
    rule = getattr(optimizer, "spec", None)
    owner = f"{type(optimizer).__name__} ({rule.name if rule else '?'})"
    index = {id(p): i for i, p in enumerate(group["params"])}
    for name, decl in decls.items():
        if decl.kind != "input" and not (name in optional and supplied and name in supplied):
            continue
        if supplied is not None and name in supplied:
            given = supplied[name]
            if not isinstance(given, Mapping):
                raise InputError(f"{owner}: inputs[{name!r}] must map each parameter to a "
                                 f"tensor, got {type(given).__name__}")
            values = []
            for p in params:
                if p not in given:
                    raise InputError(f"{owner}: inputs[{name!r}] has no tensor for parameter "
                                     f"{index[id(p)]} of group {group_index} (shape "
                                     f"{tuple(p.shape)})")
                values.append(given[p])
        elif name in PROVIDERS:
            values = PROVIDERS[name](optimizer, group, params, closure)
            if values is None:
                raise InputError(f"{owner}: the runtime could not produce input {name!r} "
                                 "this step")
        else:
            known = sorted(PROVIDERS)
            raise InputError(f"{owner}: the rule reads given({name!r}), which no provider "
                             f"makes (runtime-made inputs: {known or 'none'}); pass it as "
                             f"step(..., inputs={{{name!r}: {{param: tensor}}}})")
        found[name] = [
            _check(v, name, p, f"{owner}: parameter {index[id(p)]} of group {group_index}",
                   storage_dtype(decl, p), decl.shape) for v, p in zip(values, params)]
    return found
