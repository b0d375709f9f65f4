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

Plain DSL rules: ``majority_vote(sign(c))`` / ``allreduce(sign(c), op="mean", bits=1)``
are the communication (dsl/collectives.py): the compiler's pre-stage kernel writes each
worker's signs packed 1 bit per element, the runtime all-gathers them over the
optimizer's ``process_group`` (runtime/collective_stage.py), and the fused kernel counts
the votes from the gathered bytes and applies the result (compiler/packed_signs.py). A bit has no zero: a worker whose value is exactly 0
votes +1. The result is named ``"vote"`` in both aggregations, so
``step(inputs={"vote": {param: tensor}})`` supplies it instead (no communication).
"""
from ..dsl import Rule, allreduce, grad, majority_vote, param, sign, state
from ..dsl.spec import RuleSpec
from ._base import CatalogueOptimizer

AGGREGATIONS = ("vote", "average")


def _average(x):
    return allreduce(x, op="mean", bits=1, name="vote")


def _lion(aggregate, lr, betas, weight_decay, maximize):
    p, g = param(), grad()
    g = -g if maximize else g
    beta1, beta2 = betas
    m = state("exp_avg")  # Lion's name: Lion checkpoints load
    delta = aggregate(sign(beta1 * m + (1 - beta1) * g))
    return Rule(p - lr * (delta + weight_decay * p), exp_avg=beta2 * m + (1 - beta2) * g)


def distributed_lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    return _lion(majority_vote, lr, betas, weight_decay, maximize)


def distributed_lion_average(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    return _lion(_average, lr, betas, weight_decay, maximize)


def _signum(aggregate, lr, momentum, weight_decay, maximize):
    p, g = param(), grad()
    g = -g if maximize else g
    m = momentum * state("momentum_buffer") + (1 - momentum) * g
    return Rule(p - lr * (aggregate(sign(m)) + weight_decay * p), momentum_buffer=m)


def signum_mv(lr=1e-4, momentum=0.9, weight_decay=0.0, maximize=False):
    return _signum(majority_vote, lr, momentum, weight_decay, maximize)


def signum_mv_average(lr=1e-4, momentum=0.9, weight_decay=0.0, maximize=False):
    return _signum(_average, lr, momentum, weight_decay, maximize)


class _SignVote(CatalogueOptimizer):
    """``aggregation="vote"`` (majority: sign of the sum of signs, 0 on a tie) or
    ``"average"`` (mean of the signs) picks the rule; ``process_group``: the voting ranks
    (default WORLD; on a single process the vote of one worker is its own sign)."""

    average_rule: RuleSpec  # the same rule with allreduce(..., op="mean") for the vote

    def __init__(self, params, *args, aggregation: str = "vote", **kwargs):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"{type(self).__name__}: aggregation={aggregation!r}; expected "
                             f"one of {AGGREGATIONS}")
        self.aggregation = aggregation
        if aggregation == "average":
            self.rule = self.average_rule  # (the class's rule stays the registered one)
        super().__init__(params, *args, **kwargs)


class DistributedLion(_SignVote):
    """Lion whose workers send 1-bit sign vectors, aggregated by majority vote or averaging.

    ``aggregation="vote"`` (default) or ``"average"``; ``process_group`` (default WORLD).
    Run it *without* DDP's gradient all-reduce (docs/distributed.md).
    """

    rule = distributed_lion
    average_rule = RuleSpec(distributed_lion_average, name="DistributedLion")
    source = "Liu et al. (2024), arXiv:2404.00438, Algorithm 1"


class SignumMV(_SignVote):
    """Signum (signSGD with momentum) whose workers vote with 1-bit sign vectors.

    ``momentum=0`` is signSGD with majority vote. ``aggregation="vote"`` (the paper) or
    ``"average"``; ``process_group`` (default WORLD). Run it without DDP's all-reduce.
    """

    rule = signum_mv
    average_rule = RuleSpec(signum_mv_average, name="SignumMV")
    source = "Bernstein et al. (2019), arXiv:1810.05291, Algorithm 1 (signSGD, arXiv:1802.04434)"
