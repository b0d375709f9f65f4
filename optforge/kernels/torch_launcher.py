"""Runs a plan's generated torch code over a bucket of same-device, same-dtype tensors."""
from __future__ import annotations

import torch

from ..compiler.plan import KernelPlan
from ..compiler.printers.torch import torch_source
from .cache import load_module


def compute_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """Math runs in float32; float64 parameters keep float64 (as torch.optim does)."""
    return torch.float64 if param_dtype == torch.float64 else torch.float32


class TorchLauncher:
    """One generated ``step`` call per tensor: the reference, not the fast path."""

    def __init__(self, plan: KernelPlan):
        self.source = torch_source(plan)
        module = load_module(self.source, "torch")
        self._step = module.step
        self._reduce = getattr(module, "reduce", None)

    def reduce(self, params, grads, states, scalars) -> list[tuple]:
        """The reduce stage: each tensor's partial reductions (nothing is written)."""
        cdt = compute_dtype(params[0].dtype)
        return [self._reduce(p, grads[i], *[s[i] for s in states], scalars=scalars,
                             compute_dtype=cdt) for i, p in enumerate(params)]

    def __call__(self, params, grads, states, scalars, reduced=None) -> None:
        """``states`` is one list per state name (plan order), aligned with ``params``;
        ``reduced`` one tuple of finished reductions per parameter (multi-stage rules)."""
        cdt = compute_dtype(params[0].dtype)
        for i, p in enumerate(params):
            self._step(p, grads[i], *[s[i] for s in states], scalars=scalars,
                       compute_dtype=cdt, reduced=reduced[i] if reduced else ())
