"""Lion-K with K = ||x||_2 — Chen, Liu, Liang & Liu (2023), "Lion Secretly Solves Constrained
Optimization: As Lyapunov Predicts", arXiv:2310.05898 (seed 004:190): Lion's sign(c)
replaced by the gradient of the non-separable K(x) = ||x||_2, dK(c) = c / ||c||_2:

c = b1 m + (1 - b1) g;  p <- p - lr (c / ||c|| + wd p);  m <- b2 m + (1 - b2) g
(Algorithm 2 form, as lion_kappa.py). ||c|| is taken over the whole param group (K of the
whole parameter vector); ``per_tensor=True`` uses each tensor's norm (K = sum over tensors
of ||x_T||_2, block-separable). dK(0) is the unit ball: we take its minimum-norm element 0.
"""
from ..dsl import norm, where
from ._base import CatalogueOptimizer
from .lion_kappa import _lion_k


def lion_kappa_l2(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, per_tensor=False,
                  maximize=False):
    def dk(c):
        c_norm = norm(c, over="tensor" if per_tensor else "group")
        return where(c_norm > 0, c / c_norm, 0)
    return _lion_k(dk, lr, betas, weight_decay, maximize)


class LionKappaL2(CatalogueOptimizer):
    """Lion-K with dK = c / ||c||_2 (normalised interpolated momentum)."""

    rule = lion_kappa_l2
    source = "Chen, Liu, Liang & Liu (2023), arXiv:2310.05898, Lion-K with K = ||x||_2"
