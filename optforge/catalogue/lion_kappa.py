"""Lion-K — Chen, Liu, Liang & Liu (2023), "Lion Secretly Solves Constrained Optimization:
As Lyapunov Predicts", arXiv:2310.05898: Lion's sign() replaced by a (sub)gradient dK of a
convex K, so that Lion-K with weight decay wd minimises f(x) + K*-term (a scaled conjugate).

c = b1 m + (1 - b1) g;  p <- p - lr (dK(c) + wd p);  m <- b2 m + (1 - b2) g, in Lion's
Algorithm 2 form (our m is the paper's -m; the dK here are odd). Hyperparameters are
numbers or bools, never strings, so each separable K is its own class: LionKappaSign,
K = |x|_1, dK = sign (Lion); LionKappaIdentity, K = |x|^2/2, dK = c (momentum SGD, K* an
L2 penalty); LionKappaClamp, K = sum_i delta huber(x_i/delta), dK = clamp(c/delta, -1, 1)
(Lion where |c| > delta, linear below; Lion's box |p| <= 1/wd). The l2 K, dK = c/|c|_2,
needs a norm reduction: not an elementwise rule. ``delta`` has no published default; 1e-3
is about the momentum scale of deep-net gradients.
"""
from ..dsl import Rule, clamp, grad, param, sign, state
from ._base import CatalogueOptimizer


def _lion_k(dk, lr, betas, weight_decay, maximize):
    p, g = param(), grad()
    g = -g if maximize else g
    m = state("exp_avg")
    c = betas[0] * m + (1 - betas[0]) * g
    return Rule(p - lr * (dk(c) + weight_decay * p), exp_avg=betas[1] * m + (1 - betas[1]) * g)


def lion_kappa_sign(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    return _lion_k(sign, lr, betas, weight_decay, maximize)


def lion_kappa_identity(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    return _lion_k(lambda c: c, lr, betas, weight_decay, maximize)


def lion_kappa_clamp(lr=1e-4, betas=(0.9, 0.99), delta=1e-3, weight_decay=0.0, maximize=False):
    return _lion_k(lambda c: clamp(c / delta, -1, 1), lr, betas, weight_decay, maximize)


_PAPER = "Chen, Liu, Liang & Liu (2023), arXiv:2310.05898, Lion-K with "


class LionKappaSign(CatalogueOptimizer):
    """Lion-K with dK = sign: Lion."""
    rule, source = lion_kappa_sign, _PAPER + "K = |x|_1"


class LionKappaIdentity(CatalogueOptimizer):
    """Lion-K with dK = identity."""
    rule, source = lion_kappa_identity, _PAPER + "K = |x|_2^2 / 2"


class LionKappaClamp(CatalogueOptimizer):
    """Lion-K with dK = clamp(c / delta, -1, 1)."""
    rule, source = lion_kappa_clamp, _PAPER + "K = sum_i delta huber(x_i / delta)"
