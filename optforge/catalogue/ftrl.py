"""FTRL-Proximal — McMahan et al. (2013), "Ad Click Prediction: a View from the Trenches",
KDD, Algorithm 1: per-coordinate follow-the-regularized-leader with adaptive (time-varying)
regularisation and l1/l2 penalties.

sigma = (sqrt(n + g^2) - sqrt(n)) / lr;  z <- z + g - sigma p;  n <- n + g^2;
p <- 0 if |z| <= l1 else -(z - sign(z) l1) / ((beta + sqrt(n)) / lr + l2)
(``lr`` is the paper's alpha; CATALOGUE.md, seeds 000, 004:66). The paper starts at
w_1 = 0; a nonzero initial parameter enters only through the first sigma p term.
"""
from ..dsl import Rule, abs, grad, param, sign, sqrt, state, where
from ._base import CatalogueOptimizer


def ftrl(lr=0.1, beta=1.0, l1=0.0, l2=0.0, maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    n_old = state("n")
    n = n_old + g * g
    z = state("z") + g - (sqrt(n) - sqrt(n_old)) / lr * p
    w = -(z - sign(z) * l1) / ((beta + sqrt(n)) / lr + l2)
    return Rule(where(abs(z) <= l1, 0, w), z=z, n=n)


class FTRL(CatalogueOptimizer):
    """Per-coordinate FTRL-Proximal with l1 (exact zeros) and l2 regularisation."""

    rule = ftrl
    source = "McMahan et al. (2013), KDD, 'Ad Click Prediction', Algorithm 1"
