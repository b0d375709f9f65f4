"""Sign-vote data parallelism: workers send 1-bit sign vectors instead of gradients.

Distributed Lion — Liu et al. (2024), "Communication Efficient Distributed Training with
Distributed Lion", arXiv:2404.00438, Algorithm 1 (CATALOGUE.md, seed 002:32). Worker i,
with its own momentum m_i and gradient g_i:
    delta_i = sign(b1 m_i + (1 - b1) g_i);   m_i <- b2 m_i + (1 - b2) g_i
    Delta = majority vote sign(sum_i delta_i), or average (1/N) sum_i delta_i
    p <- p - lr (Delta + wd p)                     (weight decay on every worker, as Lion)

Signum with majority vote — Bernstein et al. (2018), "signSGD: Compressed Optimisation
for Non-Convex Problems", arXiv:1802.04434 (majority vote, Algorithm 3 / Theorem 2), and
Bernstein et al. (2019), "signSGD with Majority Vote is Communication Efficient and Fault
Tolerant", arXiv:1810.05291, Algorithm 1:
    v_i <- (1 - beta) g_i + beta v_i;   V = sum_i sign(v_i);   p <- p - lr (sign(V) + wd p)
momentum = 0 is signSGD with majority vote.

The rules below are the fused elementwise part; the vote arrives through given("vote")
from optforge.distributed.sign_vote (pack, all-gather, aggregate). A bit has no zero:
a worker whose value is exactly 0 votes +1 (optforge/distributed/sign_comm.py).
"""
import torch

from ..distributed.sign_vote import SignVoteOptimizer, group_betas
from ..dsl import Rule, given, grad, param, state
from ._base import CatalogueOptimizer


def distributed_lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    _, beta2 = betas
    m = state("exp_avg")  # Lion's name: Lion checkpoints load
    return Rule(p - lr * (given("vote") + weight_decay * p), exp_avg=beta2 * m + (1 - beta2) * g)


def signum_mv(lr=1e-4, momentum=0.9, weight_decay=0.0, maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    m = momentum * state("momentum_buffer") + (1 - momentum) * g
    return Rule(p - lr * (given("vote") + weight_decay * p), momentum_buffer=m)


def _grad(group, p):
    g = p.grad.float()
    return -g if group["maximize"] else g


def _interpolate(m, g, beta, out):
    """out = beta m + (1 - beta) g, rounded as those torch ops round (m None: m = 0)."""
    if m is None:  # before the first step m is 0, and beta * 0 + x is x exactly
        torch.mul(g, 1 - beta, out=out)
    else:
        torch.mul(m.float(), beta, out=out)
        out.add_((1 - beta) * g)


class DistributedLion(SignVoteOptimizer, CatalogueOptimizer):
    """Lion whose workers send 1-bit sign vectors, aggregated by majority vote or averaging.

    ``aggregation="vote"`` (default) or ``"average"``; ``process_group`` (default WORLD).
    Run it *without* DDP's gradient all-reduce (docs/distributed.md).
    """

    rule = distributed_lion
    source = "Liu et al. (2024), arXiv:2404.00438, Algorithm 1"

    def signal(self, group, p, state, out):  # sign(b1 m + (1 - b1) g)
        _interpolate(state.get("exp_avg"), _grad(group, p), group_betas(group)[0], out)


class SignumMV(SignVoteOptimizer, CatalogueOptimizer):
    """Signum (signSGD with momentum) whose workers vote with 1-bit sign vectors.

    ``momentum=0`` is signSGD with majority vote. ``aggregation="vote"`` (the paper) or
    ``"average"``; ``process_group`` (default WORLD). Run it without DDP's all-reduce.
    """

    rule = signum_mv
    source = "Bernstein et al. (2019), arXiv:1810.05291, Algorithm 1 (signSGD, arXiv:1802.04434)"

    def signal(self, group, p, state, out):  # sign of the new momentum
        _interpolate(state.get("momentum_buffer"), _grad(group, p), float(group["momentum"]), out)
