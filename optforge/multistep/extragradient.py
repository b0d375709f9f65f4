"""Extragradient and two-timescale extragradient for min-max problems (CATALOGUE.md, seed
002:162).

Korpelevich (1976), "The extragradient method for finding saddle points and other
problems"; two timescales: "Two-timescale Extragradient for Finding Local Minimax Points"
(seed 002:162). For min_x max_y f(x, y), with s = -1 on minimizing groups and s = +1 on
maximizing ones (``maximize=True`` in the param group):

    x_half = x + s lr g(x)           (closure at x: the extrapolation)
    x_new  = x + s lr g(x_half)      (closure at x_half: the update, taken from x)

Both players move simultaneously in each half-step. Two timescales: each group has its
own ``lr``; ``lr_max`` is the default for maximizing groups (``lr`` for the others).
Both half-steps run the compiled SGD rule (``p - lr d`` / ``p + lr d`` with maximize) on
the chosen backend; the starting point is saved before the extrapolation and copied back
before the update.
"""
from __future__ import annotations

import math

import torch

from ..catalogue.sgd import SGD
from ..runtime.backends import check_backend_name
from ._closure import CompiledUpdate, call_closure, require_closure, restore, snapshot


class Extragradient(torch.optim.Optimizer):
    """``Extragradient(params, lr=1e-2, lr_max=None, backend="auto")``.

    ``step(closure)`` calls the closure twice (a backward closure: zero grads, loss,
    ``backward()``, return loss) and returns the loss at the starting point.
    """

    def __init__(self, params, lr: float = 1e-2, lr_max: float | None = None, *,
                 backend: str = "auto"):
        check_backend_name(backend)
        self._check_lr("lr", lr)
        if lr_max is not None:
            self._check_lr("lr_max", lr_max)
        self.lr_max = lr_max
        self.backend = backend
        super().__init__(params, dict(lr=lr, maximize=False))
        self._update = None  # built on first step: groups may still be added before it

    @staticmethod
    def _check_lr(name, value, where="the constructor"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"Extragradient: {name} = {value!r} in {where} must be a finite "
                             "number >= 0")

    def add_param_group(self, param_group: dict) -> None:
        where = f"param group {len(self.param_groups)}"
        unknown = sorted(set(param_group) - {"params", "lr", "maximize"})
        if unknown:
            raise TypeError(f"Extragradient: unknown key(s) {unknown} in {where}; known: "
                            "['lr', 'maximize']")
        if not isinstance(param_group.get("maximize", False), bool):
            raise ValueError(f"Extragradient: maximize in {where} must be a bool")
        if param_group.get("maximize", False) and "lr" not in param_group \
                and self.lr_max is not None:
            param_group = dict(param_group, lr=self.lr_max)   # the second timescale
        if "lr" in param_group:
            self._check_lr("lr", param_group["lr"], where)
        super().add_param_group(param_group)
        self._update = None

    @torch.no_grad()
    def step(self, closure=None):
        require_closure("Extragradient", closure)
        if self._update is None:
            self._update = CompiledUpdate(SGD, self.param_groups, self.backend)
        loss = call_closure("Extragradient", closure)
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            raise RuntimeError("Extragradient: no parameter has a gradient after the closure "
                               "ran; did it call loss.backward()?")
        x0 = snapshot(params)
        self._update(self.param_groups, {p: p.grad for p in params})      # x_half
        call_closure("Extragradient", closure)                              # g(x_half)
        restore(params, x0)
        # a parameter without a gradient at x was not extrapolated: it sits out the update too
        self._update(self.param_groups, {p: p.grad for p in params if p.grad is not None})
        return loss
