"""D-Adaptation Adam — Defazio & Mishchenko (2023), "Learning-Rate-Free Learning by
D-Adaptation"; facebookresearch/dadaptation's ``DAdaptAdam`` (its first release's
estimate, with ``gsq_weighted``).

Adam whose step size ``d * lr`` grows to the estimate ``(sum s^2/denom / (1 - beta2) -
gsq_weighted) / ||s||_1`` of the distance to the solution. ``d`` and ``gsq_weighted`` are
optimizer-scoped states (one value for every tensor of every group, summed over them as
the reference sums over its param groups; kept in each parameter's state); ``s`` is per
element.
"""
from ..dsl import Rule, abs, grad, maximum, minimum, param, sqrt, state, total, where
from ._base import CatalogueOptimizer


def dadapt_adam(lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=False,
                d0=1e-6, growth_rate=float("inf")):
    p, g = param(), grad()
    beta1, beta2 = betas
    g = g if decouple else g + weight_decay * p
    d = state("d", init=d0, scope="optimizer")
    gsq_weighted = state("gsq_weighted", scope="optimizer")
    dlr = d * lr
    m = beta1 * state("exp_avg") + dlr * (1 - beta1) * g
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    denom = sqrt(v) + eps
    s = beta2 * state("s") + dlr * (1 - beta2) * g
    new_gsq = beta2 * gsq_weighted + total(g * g / denom, over="optimizer") * dlr**2 * (1 - beta2)
    sk_l1 = total(abs(s), over="optimizer")
    d_hat = (total(s * s / denom, over="optimizer") / (1 - beta2) - new_gsq) \
        / where(sk_l1 > 0, sk_l1, 1)
    grown = d_hat if growth_rate == float("inf") else minimum(d_hat, d * growth_rate)
    new_d = where(sk_l1 > 0, maximum(d, grown), d)  # (the reference divides by 0 there)
    # p - (wd dlr) p, as the reference adds it (p (1 - wd dlr) would round wd dlr first)
    decayed = p - (weight_decay * dlr) * p if decouple else p
    return Rule(decayed - m / denom, exp_avg=m, exp_avg_sq=v, s=s, d=new_d,
                gsq_weighted=new_gsq)


class DAdaptAdam(CatalogueOptimizer):
    """Learning-rate-free Adam: the step size d estimated by D-Adaptation."""

    rule = dadapt_adam
    source = ("Defazio & Mishchenko (2023), ICML, arXiv:2301.07733; "
              "facebookresearch/dadaptation (DAdaptAdam)")
