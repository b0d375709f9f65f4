"""Sharpness-Aware Minimization (Foret et al., 2021, arXiv:2010.01412) and its adaptive
variant ASAM (Kwon et al., 2021, arXiv:2102.11600), as a closure wrapper around any
optimizer.

SAM minimises max_{||e|| <= rho} f(w + e). Its first-order solution and step:

    e = rho g / ||g||                              g = grad f(w), ||.|| over all parameters
    g_sam = grad f(w + e)
    w <- base_step(w, g_sam)                       the base optimizer's own update

ASAM makes the neighbourhood scale-invariant with the elementwise operator T_w = |w| + eta:

    e = rho T_w^2 g / ||T_w g||

(``eta`` = 0 is the |w| scaling of the SAM authors' reference code; Kwon et al. use 0.01.)
The closure is called twice per step: at w, then at w + e; the parameters are back at w
(bit for bit) before the base step, also when the second call raises.
"""
from __future__ import annotations

import math

import torch

from ._closure import call_closure, require_closure, restore, snapshot
from ._wrap import WrappedOptimizer, build_base, params_with_grad

NORM_GUARD = 1e-12  # added to ||T g||: a zero gradient gives e = 0, not NaN


class SAM(WrappedOptimizer):
    """``SAM(params, base, rho=0.05, adaptive=False, *, eta=0.0, **base_hyperparameters)``.

    ``base`` is a built optimizer (then ``params`` may be None), an optimizer class
    (``optforge.SGD``, ``torch.optim.AdamW``: built over ``params`` with the remaining
    keyword arguments) or an optforge rule function. ``step(closure)`` needs a backward
    closure (zero grads, loss, ``backward()``, return the loss) and returns the loss at w.

    For loops that cannot hand over a closure (gradient accumulation, AMP scalers),
    ``first_step()`` perturbs w using the current ``.grad`` and ``second_step()`` puts w
    back and runs the base step, as in the SAM authors' code.
    """

    _own_keys = ("rho", "adaptive", "eta")

    def __init__(self, params, base, rho: float = 0.05, adaptive: bool = False, *,
                 eta: float = 0.0, **base_hyperparameters):
        for name, value in (("rho", rho), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"SAM: {name} = {value!r} must be a finite number >= 0")
        if not isinstance(adaptive, bool):
            raise TypeError(f"SAM: adaptive = {adaptive!r} must be a bool")
        if eta and not adaptive:
            raise ValueError("SAM: eta only applies with adaptive=True (ASAM)")
        base = build_base("SAM", params, base, base_hyperparameters)
        self.rho, self.adaptive, self.eta = float(rho), adaptive, float(eta)
        self._saved = None
        self._init_wrapper(base, rho=self.rho, adaptive=adaptive, eta=self.eta)

    @property
    def state(self):
        return self.base.state

    @torch.no_grad()
    def perturbation(self, params) -> list[torch.Tensor]:
        """e for each parameter, from its current ``.grad``."""
        scales = [p.abs() + self.eta if self.adaptive else None for p in params]
        scaled = [g if s is None else s * g for s, g in zip(scales, (p.grad for p in params))]
        # the norm of all parameters together: per-tensor norms in float64 on the first
        # parameter's device, so one host sync at most (none: the factor stays a tensor)
        device = params[0].device
        norm = torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(t, dtype=torch.float64).to(device) for t in scaled]))
        factor = self.rho / (norm + NORM_GUARD)
        # (a 0-d float64 factor does not promote a float32 tensor: e keeps p's dtype)
        return [(t if s is None else s * t) * factor.to(t.device)
                for s, t in zip(scales, scaled)]

    @torch.no_grad()
    def first_step(self) -> None:
        """w <- w + e (from the current gradients); w is kept for ``second_step``."""
        if self._saved is not None:
            raise RuntimeError("SAM.first_step: the parameters are already perturbed; call "
                               "second_step() first")
        params = params_with_grad(self.base)
        if not params:
            raise RuntimeError("SAM: no parameter has a gradient; did the closure call "
                               "loss.backward()?")
        saved = snapshot(params)
        for p, e in zip(params, self.perturbation(params)):
            p.add_(e)
        self._saved = (params, saved)

    @torch.no_grad()
    def undo_perturbation(self) -> None:
        """w + e -> w, bit for bit (a no-op when not perturbed)."""
        if self._saved is not None:
            restore(*self._saved)
            self._saved = None

    def second_step(self) -> None:
        """Put w back and take the base step with the gradient computed at w + e."""
        if self._saved is None:
            raise RuntimeError("SAM.second_step: call first_step() (and compute the gradient "
                               "at the perturbed point) first")
        self.undo_perturbation()
        self.base.step()

    def step(self, closure=None):
        require_closure("SAM", closure)
        loss = call_closure("SAM", closure)             # g at w
        self.first_step()
        try:
            call_closure("SAM", closure)                # g at w + e
        finally:
            self.undo_perturbation()                    # also when that call raised
        self.base.step()
        return loss

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(),
                "sam": dict(rho=self.rho, adaptive=self.adaptive, eta=self.eta)}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "sam"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(f"SAM.load_state_dict: expected keys 'base' and 'sam', got {got}")
        own = state_dict["sam"]
        self.base.load_state_dict(state_dict["base"])
        self.rho, self.adaptive, self.eta = float(own["rho"]), bool(own["adaptive"]), \
            float(own["eta"])
