"""Lookahead (Zhang, Lucas, Hinton & Ba, 2019, "Lookahead Optimizer: k steps forward, 1 step
back", arXiv:1907.08610, Alg. 1) around any optimizer or optforge rule.

The base optimizer moves the fast weights theta; every k of its steps the slow weights
phi move towards them and the fast weights restart from there:

    phi <- phi + alpha (theta - phi),    theta <- phi

phi starts as theta at the first step (not at construction: a model whose
weights are loaded after the optimizer is built must not be pulled back to its random
initialisation). The base optimizer's own state (moments) carries on across the
synchronisation, as in the paper. The slow weights are state (``slow_param``), saved by
``state_dict()`` next to the base optimizer's.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from ._wrap import WrappedOptimizer, build_base


class Lookahead(WrappedOptimizer):
    """``Lookahead(params, base, k=5, alpha=0.5, **base_hyperparameters)`` or
    ``Lookahead(built_optimizer, k=5, alpha=0.5)``.

    ``base``: a built optimizer, an optimizer class (``optforge.AdamW``, ``torch.optim.SGD``)
    or an optforge rule function. ``step(closure=None)`` runs the base step (passing the
    closure on) and returns its loss; ``steps`` counts them.
    """

    _own_keys = ("k", "alpha")

    def __init__(self, params, base=None, k: int = 5, alpha: float = 0.5,
                 **base_hyperparameters):
        if isinstance(params, torch.optim.Optimizer):
            if base is not None:
                raise TypeError("Lookahead(optimizer, ...): give k and alpha by keyword "
                                f"(got a second positional argument {base!r})")
            params, base = None, params
        if base is None:
            raise TypeError("Lookahead: no base optimizer given")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead: k = {k!r} must be an int >= 1")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                or not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead: alpha = {alpha!r} must lie in [0, 1]")
        base = build_base("Lookahead", params, base, base_hyperparameters)
        self.k, self.alpha, self.steps = k, float(alpha), 0
        self.state = defaultdict(dict)   # the wrapper's own: slow weights (base.state: moments)
        self._init_wrapper(base, k=k, alpha=self.alpha)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.base.param_groups for p in g["params"]]

    def step(self, closure=None):
        # slow copies of parameters not seen before (first step, add_param_group) are taken
        # before the base step moves them, and kept aside until it succeeded, so an error
        # leaves the state as it was. Every parameter gets one: with a closure, which ones
        # will have gradients is only known inside the base step.
        new_slow = {p: p.detach().clone() for p in self._params()
                    if "slow_param" not in self.state.get(p, {})}
        loss = self.base.step(closure) if closure is not None else self.base.step()
        for p, slow in new_slow.items():
            self.state[p]["slow_param"] = slow
        self.steps += 1
        if self.steps % self.k == 0:
            self.synchronize()
        return loss

    @torch.no_grad()
    def synchronize(self) -> None:
        """phi <- phi + alpha (theta - phi); theta <- phi (for every parameter with a phi)."""
        for p in self._params():
            slow = self.state[p].get("slow_param") if p in self.state else None
            if slow is not None:
                slow.lerp_(p.detach(), self.alpha)
                p.copy_(slow)

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        slow = {i: self.state[p]["slow_param"] for i, p in enumerate(self._params())
                if p in self.state and "slow_param" in self.state[p]}
        return {"base": self.base.state_dict(),
                "lookahead": dict(k=self.k, alpha=self.alpha, steps=self.steps, slow=slow)}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "lookahead"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError("Lookahead.load_state_dict: expected keys 'base' and 'lookahead', "
                             f"got {got}")
        own, params = state_dict["lookahead"], self._params()
        slow = {}
        for i, value in own["slow"].items():      # checked before anything is replaced
            if not 0 <= int(i) < len(params) or tuple(value.shape) != tuple(params[int(i)].shape):
                raise ValueError(f"Lookahead.load_state_dict: slow weight {i} (shape "
                                 f"{tuple(value.shape)}) does not match the parameters")
            p = params[int(i)]
            slow[p] = value.detach().to(device=p.device, dtype=p.dtype).clone()
        self.base.load_state_dict(state_dict["base"])
        self.k, self.alpha, self.steps = int(own["k"]), float(own["alpha"]), int(own["steps"])
        self.state = defaultdict(dict, {p: {"slow_param": s} for p, s in slow.items()})
