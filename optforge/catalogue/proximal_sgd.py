"""Proximal (projected) SGD: p <- prox_{lr R}(p - lr g), for three separable regularisers R.

ProxSGDL1, R = l1 |p|_1: soft-thresholding sign(x) max(|x| - lr l1, 0), which gives exact
zeros (the ISTA step of Beck & Teboulle (2009), SIAM J. Imaging Sci. 2(1), without FISTA's
momentum); ProxSGDBox, R = indicator of [lower, upper]: clamp; ProxSGDNonNeg, R = indicator
of p >= 0: max(x, 0). The stochastic proximal step as analysed in Garrigos & Gower (2023),
"Handbook of Convergence Theorems for (Stochastic) Gradient Methods", arXiv:2301.11235
(CATALOGUE.md, seeds 002:22, 002:192, 004:142).
"""
from ..dsl import Rule, abs, clamp, grad, maximum, param, sign
from ._base import CatalogueOptimizer


def prox_sgd_l1(lr=1e-3, l1=1e-4):
    x = param() - lr * grad()
    return Rule(sign(x) * maximum(abs(x) - lr * l1, 0))


def prox_sgd_box(lr=1e-3, lower=-1.0, upper=1.0):
    return Rule(clamp(param() - lr * grad(), lower, upper))


def prox_sgd_nonneg(lr=1e-3):
    return Rule(maximum(param() - lr * grad(), 0))


_SOURCE = "Beck & Teboulle (2009); Garrigos & Gower (2023), arXiv:2301.11235"


class ProxSGDL1(CatalogueOptimizer):
    """SGD with an l1 penalty applied through its proximal map (soft-thresholding)."""
    rule, source = prox_sgd_l1, _SOURCE


class ProxSGDBox(CatalogueOptimizer):
    """SGD projected onto the box [lower, upper] after every step."""
    rule, source = prox_sgd_box, _SOURCE


class ProxSGDNonNeg(CatalogueOptimizer):
    """SGD projected onto the non-negative orthant after every step."""
    rule, source = prox_sgd_nonneg, _SOURCE
