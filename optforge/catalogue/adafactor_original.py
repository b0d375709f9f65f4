"""The original Adafactor — Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost": relative step size, update clipping, optional momentum, as HF
transformers computes it, with pytorch-optimizer's AdaFactor options on top.

The defaults are HF transformers' ``Adafactor``: the relative step ``min(1e-2, 1/sqrt(t))``
(or ``1e-6 t`` warming up) scaled by the RMS of the parameter (at least ``eps[1]``),
``eps[0]`` added to g^2 before averaging with weight ``t^decay_rate``, the update divided
by ``max(1, RMS / clip_threshold)``, an optional first moment ``beta1`` of the clipped,
scaled update, and weight decay scaled by the step size. A matrix's second moment is one
value per row and one per column (``exp_avg_sq_row`` / ``exp_avg_sq_col``); a vector or
scalar keeps it per element in ``exp_avg_sq_row``.

pytorch-optimizer's ``AdaFactor`` under optforge's names (everything else is the same name):

| pytorch-optimizer | here |
| --- | --- |
| ``betas=(beta1, cap)``, ``(None, cap)`` | ``beta1``, ``beta2_cap=cap`` (the EMA's keep factor ``min(cap, 1 - t^decay_rate)``; 1.0, HF's, caps nothing) |
| ``eps1``, ``eps2`` | ``eps=(eps1, eps2)`` |
| ``weight_decouple=False`` | the same: L2, ``weight_decay * p`` added to the gradient |
| ``fixed_decay``, ``ams_bound``, ``maximize`` | the same |
| group key ``cautious`` | ``cautious`` (masks the momentum, as theirs; needs ``beta1``) |
| ``momentum_dtype=torch.bfloat16`` (its default) | ``bf16_momentum=True`` (``exp_avg`` stored in bfloat16, the update rounded to it first, as theirs) |
| ``lr`` with ``relative_step=True`` (ignored there) | refused, as HF does: leave ``lr=None`` |

Parameters with more than 2 dimensions are refused (see adafactor.py): pytorch-optimizer
and HF factor their last two dimensions once per leading index.
"""
from ..dsl import (Rule, cast, cautious_mask, grad, lerp, maximum, mean, minimum, ndim, norm,
                   numel, param, rsqrt, sqrt, state, step, where)
from ._adafactor_base import FactoredOptimizer
from ._base import CatalogueOptimizer


def step_size(lr, t, eps2, scale_parameter, relative_step, warmup_init):
    """Shazeer & Stern's relative step (or the given ``lr``), times the parameter's RMS."""
    if relative_step or lr is None:
        lr = minimum(1e-6 * t if warmup_init else 1e-2, 1 / sqrt(t))
    if scale_parameter:
        lr = lr * maximum(eps2, norm(param()) / sqrt(numel()))
    return lr


def inverse_root_moment(g, t, eps1, decay_rate, beta2_cap, ams_bound):
    """(1/sqrt of the second-moment estimate, its new states): factored for a matrix, per
    element for a vector; with ``ams_bound``, pytorch-optimizer's running maximum of the
    estimate's square root, divided by the EMA's weight before the root."""
    keep = minimum(beta2_cap, 1 - t**decay_rate)  # HF's beta2t, capped as pytorch-optimizer
    g2 = g * g + eps1
    row = lerp(state("exp_avg_sq_row", scope="row"), mean(g2, over="row"), 1 - keep)
    col = lerp(state("exp_avg_sq_col", scope="col"), mean(g2, over="col"), 1 - keep)
    inverse_root = where(ndim() > 1, rsqrt(row / mean(row)) * rsqrt(col), rsqrt(row))
    new = {"exp_avg_sq_row": row, "exp_avg_sq_col": col}
    if ams_bound:
        new["exp_avg_sq_hat"] = maximum(state("exp_avg_sq_hat"), 1 / inverse_root)
        inverse_root = rsqrt(new["exp_avg_sq_hat"] / (1 - keep))
    return inverse_root, new


def momentum(u, beta1, bf16_momentum):
    """The first moment of the update ``u``; in bfloat16 as pytorch-optimizer's default
    keeps it (``u`` rounded first, the average rounded after)."""
    if not bf16_momentum:
        return lerp(state("exp_avg"), u, 1 - beta1)
    average = lerp(state("exp_avg", dtype="bfloat16"), cast(u, "bfloat16"), 1 - beta1)
    return cast(average, "bfloat16")


def adafactor_original(lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8,
                       beta1=None, weight_decay=0.0, scale_parameter=True, relative_step=True,
                       warmup_init=False, beta2_cap=1.0, weight_decouple=True, fixed_decay=False,
                       ams_bound=False, cautious=False, bf16_momentum=False, maximize=False):
    # the refusals (HF's: a manual lr with relative_step, warmup_init without it, no lr;
    # options that need momentum) are AdafactorOriginal.check_group's
    p, g, t = param(), grad(), step()
    eps1, eps2 = eps
    g = -g if maximize else g
    if not weight_decouple:  # L2: pytorch-optimizer's weight_decouple=False
        g = g + weight_decay * p
    lr = step_size(lr, t, eps2, scale_parameter, relative_step, warmup_init)
    inverse_root, new = inverse_root_moment(g, t, eps1, decay_rate, beta2_cap, ams_bound)
    u = inverse_root * g
    u = lr * u / maximum(norm(u) / sqrt(numel()) / clip_threshold, 1)
    if beta1 is not None:  # optional first moment of the (clipped, scaled) update
        u = new["exp_avg"] = momentum(u, beta1, bf16_momentum)
        if cautious:
            u = u * cautious_mask(u, g)
    if weight_decouple:
        p = p * (1 - weight_decay * (1 if fixed_decay else lr))
    return Rule(p - u, **new)


class AdafactorOriginal(FactoredOptimizer, CatalogueOptimizer):
    """The original Adafactor's options (relative step, update clipping, optional
    momentum, warmup) as HF transformers computes them, and pytorch-optimizer's AdaFactor
    options (beta2 cap, L2 or fixed weight decay, AMS bound, cautious, bf16 momentum)."""

    rule = adafactor_original
    source = ("Shazeer & Stern (2018), arXiv:1804.04235; the formula of HF transformers' "
              "Adafactor (transformers.optimization.Adafactor) and pytorch-optimizer's "
              "AdaFactor (pytorch_optimizer.AdaFactor)")

    def check_group(self, group: dict, where: str) -> None:
        relative, lr = group.get("relative_step", True), group.get("lr")
        if relative and lr is not None:
            raise ValueError("Cannot combine manual `lr` and `relative_step=True` options")
        if group.get("warmup_init") and not relative:
            raise ValueError("`warmup_init=True` requires `relative_step=True`")
        if not relative and lr is None:
            raise ValueError("`relative_step=False` needs an `lr`")
        for flag in ("cautious", "bf16_momentum"):
            if group.get(flag) and group.get("beta1") is None:
                raise ValueError(f"AdafactorOriginal: `{flag}=True` in {where} acts on the "
                                 "momentum: it needs a `beta1`")
        if group.get("fixed_decay") and not group.get("weight_decouple", True):
            raise ValueError(f"AdafactorOriginal: `fixed_decay=True` in {where} is for "
                             "decoupled weight decay: it needs `weight_decouple=True`")
        cap = group.get("beta2_cap", 1.0)
        if isinstance(cap, (int, float)) and not 0.0 <= cap <= 1.0:
            raise ValueError(f"AdafactorOriginal: `beta2_cap` = {cap!r} in {where}: "
                             "expected a number in [0, 1]")
        super().check_group(group, where)
