"""OASIS (Jahani, Rusakov, Shi, Richtárik, Mahoney & Takáč (2021), "Doubly Adaptive Scaled
Algorithm for Machine Learning Using Second-Order Information", arXiv:2109.05198; seed
002:226), Algorithm 1 with its automatic learning rate (``adaptive_lr=True``, the default):

    h_t = z ⊙ (H z)                         Hutchinson probe, given("hutchinson")
    D_1 = h_1                               warm start: the paper's D_0 = mean of z ⊙ Hz
                                            at w_0 (num_samples probes)
    D_t = β2 D_{t-1} + (1 - β2) h_t         t >= 2
    D̂_t = max(|D_t|, α)                     truncation keeps the preconditioner positive
    ĝ_t = g_t + wd w_t                      gradient of the loss + wd/2 ||w||²
    η_1 = lr,  θ_1 = +∞                     the paper's η_0 and θ_0 (its w_1 = w_0 - η_0 D̂_0⁻¹ ĝ_0)
    η_t = min(sqrt(1 + θ_{t-1}) η_{t-1},    t >= 2; norms over all parameters of the group:
              ||w_t - w_{t-1}||_D̂ / (2 ||ĝ_t - ĝ_{t-1}||*_D̂))   ||x||_D̂ = sqrt(x·D̂x),
    θ_t = η_t / η_{t-1}                                           ||x||*_D̂ = sqrt(x·x/D̂)
    w  <- w - η_t ĝ_t / D̂_t

Step t here is the paper's iteration k = t - 1. ``adaptive_lr=False`` is the fixed-step
variant (η_t = lr, no prev_param / prev_grad states).

Zero denominators: when ĝ_t = ĝ_{t-1} (no curvature seen along the step, e.g. a linear
loss) the second term is +∞ and η grows by sqrt(1 + θ), as in Malitsky & Mishchenko's
adaptive gradient descent that OASIS extends. When w_t = w_{t-1} the quotient carries no
information either (0/0 in the deterministic case) and would pin η at 0 for good (θ = 0),
so it is dropped the same way. On the first adaptive step both terms can be +∞ (θ = +∞
and equal gradients): η keeps its previous value (θ = 1) instead of becoming infinite.

Learning-rate schedulers: ``lr`` is η_1 (a torch scheduler's ``initial_lr`` when one is
attached); the step actually taken is η_t · lr_t / η_1, so a schedule scales the
automatic step size (with no scheduler the factor is 1: the paper's algorithm).

Implementation: η_t, θ_t and η_1 are group-level scalars kept in the param group (keys
``"eta"``, ``"theta"``, ``"eta_base"``, absent before the first step and dropped while
``adaptive_lr`` is off; saved by ``state_dict()``). The rule writes w_t and ĝ_t to the per-element states ``prev_param`` and
``prev_grad``; before each group's kernel, ``step_hyperparameters`` (the optimizer's
public per-step hook) computes the two D̂-norms with
torch ops on the host (an extra pass reading w, prev_param, g, prev_grad, hessian_diag and
the Hutchinson estimate) and hands η_t to the kernel as its run-time ``lr`` scalar, so
nothing recompiles. Parameters without a previous iterate (joined the group later) are
left out of the norms. ĝ_{t-1} is the previous step's gradient (on the previous batch):
the deterministic algorithm; the paper's stochastic variant evaluates ∇F_{I_t}(w_{t-1}) on
the current batch, which this rule does not do.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from ..dsl import Rule, abs, given, grad, maximum, param, state, step, where
from ..runtime import providers  # noqa: F401 - registers "hutchinson"
from ._base import CatalogueOptimizer

# param group keys of the adaptive step size: η_t, θ_t and η_1 (the lr it started from)
ETA, THETA, BASE = "eta", "theta", "eta_base"


def oasis(lr=1e-2, beta2=0.99, alpha=1e-5, weight_decay=0.0, num_samples=1, adaptive_lr=True):
    p, g, t = param(), grad(), step()
    h = given("hutchinson")
    d = where(t <= 1, h, beta2 * state("hessian_diag") + (1 - beta2) * h)
    g_hat = g + weight_decay * p
    new_p = p - lr * g_hat / maximum(abs(d), alpha)  # lr: η_t when adaptive (set per step)
    if not adaptive_lr:
        return Rule(new_p, hessian_diag=d)
    state("prev_param", init=p)  # w_{t-1}, ĝ_{t-1}: read on the host, never in the kernel
    state("prev_grad")
    return Rule(new_p, hessian_diag=d, prev_param=p, prev_grad=g_hat)


def next_eta(eta: float, theta: float, sq_step: float, sq_grad_diff: float) -> float:
    """η_t from η_{t-1}, θ_{t-1}, ||w_t - w_{t-1}||²_D̂ and (||ĝ_t - ĝ_{t-1}||*_D̂)²."""
    growth = math.sqrt(1.0 + theta) * eta
    bound = math.inf
    if sq_step > 0 and sq_grad_diff > 0:  # else no curvature information: see the docstring
        bound = math.sqrt(sq_step) / (2.0 * math.sqrt(sq_grad_diff))
    new = min(growth, bound)
    return eta if math.isinf(new) else new


class OASIS(CatalogueOptimizer):
    """Gradient preconditioned by a truncated moving average of Hutchinson's Hessian
    diagonal, with the paper's automatic step size (``lr`` is only the first step's).

    Needs ``loss.backward(create_graph=True)`` before ``step()``, or ``step(closure)``.
    The current step size of group i is ``param_groups[i]["eta"]``.
    """

    rule = oasis
    own_group_keys = frozenset({ETA, THETA, BASE})
    source = "Jahani et al. (2021), arXiv:2109.05198, Algorithm 1"

    def step_hyperparameters(self, index: int, group: dict, params: list, given: dict):
        """The kernel's lr is η_t (scaled by a scheduler's change of lr since the start);
        η_t, θ_t and η_1 ride along to ``step_committed``, which keeps them."""
        if not group["adaptive_lr"] or not params:
            for key in (ETA, THETA, BASE):  # turned off: a later re-enable starts afresh
                group.pop(key, None)
            return group
        eta, theta, base = self.adaptive_step(index, group, params, given["hutchinson"])
        return dict(group, lr=eta * float(group["lr"]) / base,
                    **{ETA: eta, THETA: theta, BASE: base})

    def step_committed(self, index: int, group: dict, hyper: dict, skipped: bool) -> None:
        if hyper is not group and not skipped:  # a skipped step moved nothing
            group[ETA], group[THETA], group[BASE] = hyper[ETA], hyper[THETA], hyper[BASE]

    def adaptive_step(self, index: int, group: dict, params, hutchinson: dict):
        """(η_t, θ_t, η_1) for the group's next step; the norms are one host pass over it."""
        if ETA not in group:  # first step (or adaptive_lr just turned on): η_1 = lr
            # a scheduler's starting lr (torch schedulers keep it as "initial_lr"), so a
            # warm-up that begins at lr = 0 still has a first step size
            base = float(group.get("initial_lr", group["lr"]))
            if not base > 0:
                raise ValueError(f"{type(self).__name__}: lr = {group['lr']!r} in param group "
                                 f"{index}; with adaptive_lr=True lr is the first step size "
                                 "η_0 and must be > 0")
            return base, math.inf, base
        beta2, alpha, wd = (float(group[k]) for k in ("beta2", "alpha", "weight_decay"))
        sums = defaultdict(list)  # device -> [(||Δw||²_D̂, ||Δĝ||*²_D̂)]: one sync per device
        for p in params:
            state = self.state.get(p, {})
            if "prev_param" not in state or "prev_grad" not in state:
                continue  # no previous iterate yet
            work = torch.promote_types(p.dtype, torch.float32)
            h = hutchinson[p].to(work)
            d = h if float(state["step"]) < 1 else beta2 * state["hessian_diag"].to(work) \
                + (1 - beta2) * h
            d_hat = d.abs().clamp_(min=alpha)
            dw = p.detach().to(work) - state["prev_param"].to(work)
            dg = p.grad.detach().to(work) + wd * p.detach().to(work) \
                - state["prev_grad"].to(work)
            sums[p.device].append(torch.stack([
                (dw.square() * d_hat).sum(dtype=torch.float64),
                (dg.square() / d_hat).sum(dtype=torch.float64)]))
        sq_step = sq_grad = 0.0
        for values in sums.values():
            a, b = torch.stack(values).sum(0).tolist()
            sq_step, sq_grad = sq_step + a, sq_grad + b
        eta_prev, theta_prev = float(group[ETA]), float(group[THETA])
        eta = next_eta(eta_prev, theta_prev, sq_step, sq_grad)
        return eta, eta / eta_prev, float(group[BASE])
