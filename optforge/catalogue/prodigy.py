"""Prodigy — Mishchenko & Defazio (2024), "Prodigy: An Expeditiously Adaptive
Parameter-Free Learner"; the reference implementation's Adam form (konstmish/prodigy).

Adam whose step size ``d`` estimates the distance to the solution: ``d`` grows to
``d_coef * d_numerator / ||s||_1``, where ``d_numerator`` accumulates ``<g, p0 - p>``
and ``s`` the d-weighted gradients. ``d``, its running maximum and ``d_numerator`` are
optimizer-scoped states (one value for every tensor of every group, summed over them
as the reference sums over its param groups; kept in each parameter's state);
``p0`` (the starting point) and ``s`` are per element.
"""
from ..dsl import (Rule, abs, dot, eq, grad, maximum, minimum, param, sqrt, state, step, total,
                   where)
from ._base import CatalogueOptimizer


def prodigy(lr=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8, weight_decay=0.0, decouple=True,
            use_bias_correction=False, safeguard_warmup=False, d0=1e-6, d_coef=1.0,
            growth_rate=float("inf")):
    p, g, t = param(), grad(), step()
    beta1, beta2 = betas
    beta3 = sqrt(beta2) if beta3 is None else beta3
    g = g if decouple else g + weight_decay * p
    d = state("d", init=d0, scope="optimizer")
    d_max = state("d_max", init=d0, scope="optimizer")
    d_numerator = state("d_numerator", init=0, scope="optimizer")
    dlr = d * lr * (sqrt(1 - beta2**t) / (1 - beta1**t) if use_bias_correction else 1)
    p0 = state("p0", init=param())
    m = beta1 * state("exp_avg") + d * (1 - beta1) * g
    v = beta2 * state("exp_avg_sq") + d * d * (1 - beta2) * g * g
    s = beta3 * state("s") + (d / d0) * (d if safeguard_warmup else dlr) * g
    numerator = beta3 * d_numerator + (d / d0) * dlr * dot(g, p0 - p, over="optimizer")
    denom = total(abs(s), over="optimizer")
    # as the reference: no s yet (every gradient so far 0, or lr 0) changes neither d nor
    # p, and d only moves while lr > 0
    moves, grows = denom > 0, (denom > 0) & (lr > 0)
    d_hat = d_coef * numerator / where(moves, denom, 1)
    new_max = where(grows, maximum(d_max, d_hat), d_max)
    if growth_rate == float("inf"):  # min(d_max, d * inf): the running maximum
        new_d = where(grows, new_max, d)
    else:  # d rises to d_hat at once while it is d0, then by at most growth_rate a step
        rise = minimum(new_max, where(eq(d, d0), maximum(d, d_hat), d) * growth_rate)
        new_d = where(grows, rise, d)
    # p - (wd dlr) p, as the reference adds it: in float32, p (1 - wd dlr) would round a
    # tiny wd dlr (d starts at 1e-6) to a multiple of 2^-24 first
    decayed = p - (weight_decay * dlr) * p if decouple else p
    new_p = where(moves, decayed - dlr * m / (sqrt(v) + new_d * eps), p)
    return Rule(new_p, exp_avg=m, exp_avg_sq=v, s=s, p0=p0, d=new_d, d_max=new_max,
                d_numerator=where(moves, numerator, d_numerator))


class Prodigy(CatalogueOptimizer):
    """Parameter-free Adam: the step size d estimated from the distance travelled."""

    rule = prodigy
    source = ("Mishchenko & Defazio (2024), ICML, arXiv:2306.06101; konstmish/prodigy "
              "(the reference implementation)")
