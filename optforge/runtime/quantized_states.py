"""8-bit states in the runtime: which tensors are quantized, and checkpoints of them.

A group whose storage options make some state 8-bit (``state_dtype="int8"``) runs two
rule variants: tensors of at least ``quant_min_numel`` elements (4096) keep those states
packed in 8 bits (codes and per-block scales, compiler/quant_format.py); smaller ones
keep them in float32, as bitsandbytes does (their scales would cost more than they save,
and small tensors are biases and norms, where precision matters most). The variant is
chosen per parameter in the step's collect stage, and each gets buckets of its own.

Checkpoints hold an 8-bit state as its codes (uint8, the parameter's shape) under the
state's name, its scales (float32, one per block) under ``<name>.absmax`` and its format
under ``<name>.format``: readable without optforge's packing. Loading converts whatever was saved into what this optimizer
stores: codes + scales (exactly), or float32 values (quantized on load), into an 8-bit
state; codes + scales into a float32 one (dequantized on load).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch

from ..compiler.quant_format import parse
from ..kernels.quantized import join, split, unpack
from . import storage_options
from .compiled import compile_rule

SCALES = ".absmax"  # the checkpoint key of a state's scales: "<state>.absmax"
FORMAT = ".format"  # and of its format: "<state>.format" = "q8u256"


@dataclass(frozen=True)
class Variants:
    """The float32-state variant of a group's compiled rule, and who runs which."""

    small: object  # CompiledRule with the 8-bit states in float32
    min_numel: int

    def quantizes(self, param: torch.Tensor) -> bool:
        return param.numel() >= self.min_numel


def variants(opt, group, compiled) -> Variants | None:
    """None unless the group keeps some state in 8 bits."""
    options = compiled.storage
    if not options.state_dtypes:  # (the usual case, asked on every step: no call)
        return None
    if not storage_options.quantizes(options, group, numel=1 << 62):
        return None
    small = compile_rule(compiled.spec, compiled.variant, opt.skip_nonfinite,
                         options.float32_states())
    return Variants(small, min_numel(group))


def rule_for(rule, group: dict, param):
    """``rule`` as ``param``'s states are stored: its 8-bit states in float32 when the
    tensor is too small to quantize (the declarations checkpoints check against)."""
    formats = {n: parse(d.dtype) for n, d in rule.states.items()}
    if not any(formats.values()) or param.numel() >= min_numel(group):
        return rule
    out = copy.copy(rule)
    out.states = {n: replace(d, dtype="float32") if formats[n] else d
                  for n, d in rule.states.items()}
    return out


def min_numel(group: dict) -> int:
    return group.get("quant_min_numel", storage_options.SMALL_TENSOR)


# ---- checkpoints ------------------------------------------------------------------------
def to_checkpoint(decls: dict, group: dict, params: list, keys: list, states: dict) -> None:
    """In a state dict being saved: each packed state becomes its codes (the parameter's
    shape), ``<name>.absmax`` scales and ``<name>.format`` (e.g. "q8u256"), in a new dict
    (the saved dicts are the optimizer's own)."""
    formats = {n: parse(d.dtype) for n, d in decls.items() if parse(d.dtype)}
    if not formats:
        return
    for p, key in zip(params, keys):
        state = states.get(key)
        if not state or p.numel() < min_numel(group):
            continue
        state = states[key] = dict(state)
        for name, fmt in formats.items():
            if isinstance(state.get(name), torch.Tensor) and state[name].dtype == torch.uint8:
                codes, scales = split(state[name], fmt, p.numel())
                state[name] = codes.view(p.shape)
                state[name + SCALES], state[name + FORMAT] = scales, fmt.dtype


def from_checkpoint(rule, param, state: dict) -> dict:
    """A loaded state with its saved 8-bit states unpacked for the load's checks: packed
    again where ``rule`` stores that state in the same format (exactly as saved), else
    dequantized to float32 values (quantized on install by ``install``). Returns
    ``state`` itself when it holds no 8-bit state; never changes it."""
    saved = [k[: -len(FORMAT)] for k in state if isinstance(k, str) and k.endswith(FORMAT)]
    if not saved:
        return state
    out = dict(state)
    for name in saved:
        fmt, codes = parse(out.pop(name + FORMAT)), out.get(name)
        scales = out.pop(name + SCALES, None)
        if fmt is None or not isinstance(codes, torch.Tensor) \
                or not isinstance(scales, torch.Tensor):
            raise ValueError(f"state {name!r}: an 8-bit checkpoint state needs uint8 codes, "
                             f"float32 '{name}{SCALES}' scales and a format such as "
                             f"'q8u256' under '{name}{FORMAT}'")
        packed = join(codes, scales, fmt)
        decl = rule.states.get(name)
        out[name] = packed if decl is not None and parse(decl.dtype) == fmt \
            else unpack(packed, fmt, tuple(param.shape))
    return out


def packed_state_ok(decl, param, value) -> bool:
    """Whether a loaded ``value`` is ``decl``'s 8-bit state of ``param``, packed."""
    fmt = parse(decl.dtype)
    return (fmt is not None and isinstance(value, torch.Tensor) and value.dtype == torch.uint8
            and tuple(value.shape) == (fmt.packed_bytes(param.numel()),))
