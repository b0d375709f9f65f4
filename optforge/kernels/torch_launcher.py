"""Runs a plan's generated torch code over a bucket of same-device, same-dtype tensors."""
from __future__ import annotations

import torch

from ..compiler.plan import KernelPlan
from ..compiler.codegen import source
from .cache import load_module


def compute_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """Math runs in float32; float64 parameters keep float64 (as torch.optim does)."""
    return torch.float64 if param_dtype == torch.float64 else torch.float32


class TorchLauncher:
    """One generated ``step`` call per tensor: the reference, not the fast path."""

    # torch ops check nothing before writing: the optimizer checks states for it
    checks_tensors = False

    def __init__(self, plan: KernelPlan):
        self.source = source(plan, "torch")
        module = load_module(self.source, "torch")
        self._step = module.step
        self._reduce_stages = module.REDUCE_STAGES
        self._matrix_stages = module.MATRIX_STAGES
        self._matrix_checks = module.MATRIX_CHECKS

    def check(self, params, grads, states, labels=None) -> None:
        """The check phase: nothing launcher-specific. Torch operations take any layout
        and dispatch through tensor subclasses (DTensor), and the optimizer has checked
        shapes, dtypes and devices."""

    def reduce(self, stage: int, params, grads, states, scalars, reduced,
               prepared=None) -> list[tuple]:
        """Reduce stage ``stage``: each tensor's partial reductions (nothing is written);
        ``reduced`` holds each tensor's finished results of the earlier stages."""
        cdt = compute_dtype(params[0].dtype)
        fn = self._reduce_stages[stage]
        return [fn(p, grads[i], *[s[i] for s in states], scalars=scalars, compute_dtype=cdt,
                   reduced=reduced[i]) for i, p in enumerate(params)]

    def matrix(self, stage: int, params, grads, states, scalars, reduced) -> list[tuple]:
        """Matrix stage ``stage``: per tensor, its outputs (buffers shaped like the
        parameter, matrix states' new values) in ``plan.matrix_stages[stage].outputs``
        order."""
        cdt = compute_dtype(params[0].dtype)
        fn = self._matrix_stages[stage]
        return [fn(p, grads[i], *[s[i] for s in states], scalars=scalars, compute_dtype=cdt,
                   reduced=reduced[i]) for i, p in enumerate(params)]

    def matrix_check(self, stage: int, params, grads, states, scalars, reduced) -> None:
        """Raise (naming it) if a run-time scalar of matrix stage ``stage`` is out of range,
        before anything of the step is written."""
        cdt = compute_dtype(params[0].dtype)
        fn = self._matrix_checks[stage]
        for i, p in enumerate(params):
            fn(p, grads[i], *[s[i] for s in states], scalars=scalars, compute_dtype=cdt,
               reduced=reduced[i])

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        """``states`` is one list per name of ``plan.states`` (states, inputs, buffers),
        aligned with ``params``; ``reduced`` one tuple of finished reductions per parameter
        (multi-stage rules)."""
        cdt = compute_dtype(params[0].dtype)
        for i, p in enumerate(params):
            self._step(p, grads[i], *[s[i] for s in states], scalars=scalars,
                       compute_dtype=cdt, reduced=reduced[i] if reduced else (), tid=i)
