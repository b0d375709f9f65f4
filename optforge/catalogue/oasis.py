"""OASIS (Jahani, Rusakov, Shi, Richtárik, Mahoney & Takáč (2021), "Doubly Adaptive Scaled
Algorithm for Machine Learning Using Second-Order Information", arXiv:2109.05198; seed
002:226), fixed learning-rate form:

    h_t = z ⊙ (H z)                         Hutchinson probe, given("hutchinson")
    D_1 = h_1                               warm start: the paper's D_0 = mean of z ⊙ Hz
                                            at x_0 (num_samples probes)
    D_t = β2 D_{t-1} + (1 - β2) h_t         t >= 2
    D̂_t = max(|D_t|, α)                     truncation keeps the preconditioner positive
    p  <- p - lr ĝ / D̂_t,  ĝ = g + wd p

Not implemented: the paper's adaptive learning rate (η_t = min(sqrt(1 + θ) η_{t-1},
||x_t - x_{t-1}||_D̂ / (2 ||∇f(x_t) - ∇f(x_{t-1})||*_D̂)), which needs scalar optimizer
states (η_{t-1}, θ_{t-1}) across steps that the DSL does not have yet; ``lr`` is the
fixed learning rate of the paper's fixed-step variant.
"""
from ..dsl import Rule, abs, given, grad, maximum, param, state, step, where
from ..runtime import providers  # noqa: F401 - registers "hutchinson"
from ._base import CatalogueOptimizer


def oasis(lr=1e-2, beta2=0.99, alpha=1e-5, weight_decay=0.0, num_samples=1):
    p, g, t = param(), grad(), step()
    h = given("hutchinson")
    d = where(t <= 1, h, beta2 * state("hessian_diag") + (1 - beta2) * h)
    return Rule(p - lr * (g + weight_decay * p) / maximum(abs(d), alpha), hessian_diag=d)


class OASIS(CatalogueOptimizer):
    """Gradient preconditioned by a truncated moving average of Hutchinson's Hessian diagonal.

    Needs ``loss.backward(create_graph=True)`` before ``step()``, or ``step(closure)``.
    """

    rule = oasis
    source = "Jahani et al. (2021), arXiv:2109.05198 (fixed learning rate)"
