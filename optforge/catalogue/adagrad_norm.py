"""AdaGrad-Norm — Ward, Wu & Bottou (2019), arXiv:1806.01811 — and AdAdaGrad-Norm, Lau, Liu
& Kolar (2024), arXiv:2402.11215 (seed 002:14), which trains with AdaGrad-Norm while the
norm test grows the batch size (official code: github.com/timlautk/AdAdaGrad, tests.py).

b^2 <- b^2 + ||g||^2 over the whole param group;  p <- p - lr g / (sqrt(b^2) + eps)
b_0^2 is ``initial_accumulator_value`` (1e-2, lr 1 and eps 1e-10 as the official code).
States are per element, so the scalar b^2 is stored replicated in every element of every
tensor (state ``sum``, 4 B/param); each copy gets the same update, so they stay equal as
long as every tensor of the group has a gradient at every step (a tensor skipped for a
step keeps a stale copy: give such tensors their own group).
"""
import math

from ..dsl import Rule, grad, norm, param, sqrt, state
from ._base import CatalogueOptimizer


def adagrad_norm(lr=1.0, initial_accumulator_value=1e-2, eps=1e-10):
    p, g = param(), grad()
    b2 = state("sum", init=initial_accumulator_value) + norm(g, over="group") ** 2
    return Rule(p - lr * g / (sqrt(b2) + eps), sum=b2)


def norm_test_batch_size(per_sample_grads, eta, max_batch_size=None) -> int:
    """AdAdaGrad-Norm's next batch size (host side) from per-sample gradients, a list of
    (b, *param.shape) tensors (torch.func.vmap(grad)): the norm test ceil(max(b,
    ||Var_j g_j||_1 / (eta^2 ||mean_j g_j||^2))), unbiased Var, capped at max_batch_size;
    a zero mean gradient gives max_batch_size (b without a cap)."""
    b = per_sample_grads[0].shape[0]
    var = sum(float(x.double().var(0, correction=1).sum()) for x in per_sample_grads)
    sq = sum(float(x.double().mean(0).square().sum()) for x in per_sample_grads)
    if sq == 0:
        return b if max_batch_size is None else max_batch_size
    new = math.ceil(max(b, var / (eta**2 * sq)))
    return new if max_batch_size is None else min(new, max_batch_size)


class AdagradNorm(CatalogueOptimizer):
    """One adaptive step size for the whole group: lr / sqrt(b0^2 + sum of ||g||^2)."""

    rule = adagrad_norm
    source = "Ward, Wu & Bottou (2019), arXiv:1806.01811 (AdaGrad-Norm)"


class AdAdaGradNorm(AdagradNorm):
    """AdaGrad-Norm steps; pick each next batch size with ``norm_test_batch_size``."""

    rule = adagrad_norm
    source = "Lau, Liu & Kolar (2024), arXiv:2402.11215 (AdAdaGrad-Norm, norm test)"
    norm_test_batch_size = staticmethod(norm_test_batch_size)
