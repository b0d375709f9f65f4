"""Optax-style pieces of an update rule, to be composed with ``chain(...)``.

A transform maps the running *update* ``u`` (it starts as the gradient) to a new
update, possibly reading and writing states; the chained rule's new parameter is
``p + u``, so, as in optax, ``scale_by_lr`` multiplies by ``-lr``. Each transform
owns the hyperparameters it names: they become ``param_groups`` keys of the chain,
with the defaults given here (``scale_by_adam(betas=(0.8, 0.99))``).

Composition happens on expressions, before compilation, so a chain is ONE rule and
compiles to one fused kernel, exactly like the same rule written by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from .functions import lerp, maximum, minimum, sign, sqrt, where
from .reductions import norm, numel, total
from .symbols import grad, param, state, step


@dataclass(frozen=True)
class Transform:
    """``apply(u, hyper, writes) -> new u``; ``hyper`` maps this transform's keys to symbols
    (or bools); ``writes`` collects the new value of every state it updates."""

    name: str
    defaults: dict = field(default_factory=dict)
    apply: Callable[[sp.Expr, dict, dict], sp.Expr] = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{self.name}({shown})"


def adam_direction(g, t, betas, eps, amsgrad):
    """The bias-corrected Adam direction m_hat / (sqrt(v_hat) + eps) and the new states.

    Written the way torch computes it: ``m.lerp_(g, 1 - beta1)`` and the denominator
    ``sqrt(v) / sqrt(1 - beta2^t) + eps``, with torch's state names.
    """
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq", nonnegative=True) + (1 - beta2) * g * g
    states = {"exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        v = maximum(state("max_exp_avg_sq", nonnegative=True), v)
        states["max_exp_avg_sq"] = v
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    return m / ((1 - beta1**t) * denom), states


def scale_by_adam(betas=(0.9, 0.999), eps=1e-8, amsgrad=False) -> Transform:
    """Adam's bias-corrected moment ratio (states ``exp_avg``, ``exp_avg_sq``)."""
    def apply(u, h, writes):
        direction, states = adam_direction(u, step(), h["betas"], h["eps"], h["amsgrad"])
        writes.update(states)
        return direction
    return Transform("scale_by_adam", {"betas": betas, "eps": eps, "amsgrad": amsgrad}, apply)


def scale_by_rms(alpha=0.99, eps=1e-8) -> Transform:
    """Divide by the root of an EMA of squared updates (RMSprop; state ``square_avg``)."""
    def apply(u, h, writes):
        v = h["alpha"] * state("square_avg", nonnegative=True) + (1 - h["alpha"]) * u * u
        writes["square_avg"] = v
        return u / (sqrt(v) + h["eps"])
    return Transform("scale_by_rms", {"alpha": alpha, "eps": eps}, apply)


def scale_by_sign() -> Transform:
    """The elementwise sign of the update (signSGD)."""
    return Transform("scale_by_sign", {}, lambda u, h, writes: sign(u))


def trace(momentum=0.9, nesterov=False) -> Transform:
    """Heavy-ball momentum ``b <- momentum * b + u`` (state ``momentum_buffer``)."""
    def apply(u, h, writes):
        buf = h["momentum"] * state("momentum_buffer") + u
        writes["momentum_buffer"] = buf
        return u + h["momentum"] * buf if h["nesterov"] else buf
    return Transform("trace", {"momentum": momentum, "nesterov": nesterov}, apply)


def add_decayed_weights(weight_decay=1e-2) -> Transform:
    """Add ``weight_decay * p`` to the update (decoupled when it comes after the scaling)."""
    return Transform("add_decayed_weights", {"weight_decay": weight_decay},
                     lambda u, h, writes: u + h["weight_decay"] * param())


def scale_by_lr(lr=1e-3) -> Transform:
    """Multiply by ``-lr``: the step to add to the parameter."""
    return Transform("scale_by_lr", {"lr": lr}, lambda u, h, writes: -h["lr"] * u)


def scale(factor=1.0, name="factor") -> Transform:
    """Multiply by a constant hyperparameter called ``name``."""
    return Transform("scale", {name: factor}, lambda u, h, writes: h[name] * u)


def cautious_mask(u, g):
    """The Cautious mask (Liang et al. 2024, arXiv:2411.16085): keep the coordinates where
    the update ``u`` agrees in sign with the gradient ``g``, rescaled by
    ``numel / (kept + 1)`` so the update keeps its size (the official C-Optim code and
    pytorch-optimizer's ``apply_cautious``)."""
    mask = where(u * g > 0, 1, 0)
    return mask * numel() / (total(mask) + 1)


def cautious_step() -> Transform:
    """Mask the update with ``cautious_mask`` against the gradient (a reduce stage)."""
    return Transform("cautious", {}, lambda u, h, writes: u * cautious_mask(u, grad()))


def clip_by_global_norm(max_norm=1.0, over: str = "optimizer") -> Transform:
    """Scale the update by ``min(1, max_norm / (||u|| + 1e-6))``, the norm taken over every
    parameter of the optimizer (every param group and, for sharded parameters, every
    rank): torch.nn.utils.clip_grad_norm_ fused into the step. ``over="group"`` takes it
    per param group instead."""
    def apply(u, h, writes):
        return u * minimum(1, h["max_norm"] / (norm(u, over=over) + 1e-6))
    return Transform("clip_by_global_norm", {"max_norm": max_norm}, apply)
