"""Rules with collectives (allreduce, majority_vote) and what each rank runs with them in
tests/distributed/test_collectives_ranks.py; the test recomputes every step in plain torch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

import optforge
from optforge.dsl import Rule, allreduce, grad, majority_vote, param, sign, state
from tests.distributed.spawn import save

STEPS = 3
SHAPES = [(5, 7), (13,), (3, 3)]  # 35 + 13 + 9 = 57 elements: a padded last byte


def mean_sgd(lr=0.1):
    """SGD on the workers' mean gradient (an fp32 all-reduce: DDP's averaging)."""
    return Rule(param() - lr * allreduce(grad(), op="mean"))


def sign_sum(lr=0.1):
    """The sum of the workers' 1-bit signs of g."""
    return Rule(param() - lr * allreduce(sign(grad()), op="sum", bits=1))


def negative_vote(lr=0.1, beta=0.5):
    """A majority vote of -sign(c) (the sign's negation is a sign too), with a momentum."""
    p, g = param(), grad()
    c = beta * state("m") + (1 - beta) * g
    return Rule(p - lr * majority_vote(-sign(c)), m=c)


def grads(step: int, rank: int) -> list[torch.Tensor]:
    """Rank ``rank``'s gradients at ``step``; exact zeros in places (sent as +1)."""
    gen = torch.Generator().manual_seed(100 * step + rank)
    out = []
    for shape in SHAPES:
        g = torch.randn(shape, generator=gen)
        g.view(-1)[::11] = 0.0
        out.append(g)
    return out


def initial() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(shape, generator=gen) for shape in SHAPES]


def make_optimizer(params: list, backend: str = "torch", process_group=None):
    """One optimizer, three param groups, three rules: both channels in one step."""
    groups = [{"params": [params[0]], "rule": mean_sgd},
              {"params": [params[1]], "rule": sign_sum},
              {"params": [params[2]], "rule": negative_vote, "beta": 0.5}]
    return optforge.Optimizer(groups, sign_sum, backend=backend, lr=0.1,
                              process_group=process_group)


def run_dsl(rank: int, world: int, out_dir: str) -> None:
    """STEPS steps on this rank's gradients over WORLD; on 4 ranks also over the pairs
    {0, 1} and {2, 3} (a process_group of two)."""
    cases = {"world": None}
    if world == 4:
        pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]  # every rank makes both
        cases["pair"] = pairs[rank // 2]
    for name, group in cases.items():
        params = [torch.nn.Parameter(t) for t in initial()]
        opt = make_optimizer(params, "numba", group)
        for k in range(STEPS):
            for p, g in zip(params, grads(k, rank)):
                p.grad = g
            opt.step()
        save(out_dir, name, rank, [p.detach().clone() for p in params])
