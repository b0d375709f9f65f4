"""Random-scaled SGDM vs a plain-torch implementation of Zhang & Cutkosky (2024), with the
same Exp(1) draws; the draws are reproducible from the seed and change with it."""

import pytest
import torch

import optforge
from optforge.dsl import DSLError, Rule, RuleSpec, grad, param, random_scalar
from optforge.dsl.randomness import draw
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefRandomScaledSGDM(torch.optim.Optimizer):
    """m = beta m + (1 - beta) g; p -= s lr m with s ~ Exp(1), the draws given in advance."""

    def __init__(self, params, draws, lr=1e-3, beta=0.9):
        super().__init__(params, dict(lr=lr, beta=beta))
        self.draws = iter(draws)

    @torch.no_grad()
    def step(self):
        s = next(self.draws)
        for group in self.param_groups:
            for p in group["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.add_(m, alpha=-s * group["lr"])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape, backend):
    draws = [draw("exponential", 7, 0, t, "s") for t in range(1, 21)]
    assert all(d > 0 for d in draws) and len(set(draws)) == 20
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.RandomScaledSGDM(ps, lr=0.05, seed=7, backend=backend),
        lambda ps: RefRandomScaledSGDM(ps, draws, lr=0.05), shape)
    assert norm_rel(ours, ref) < 1e-6


def test_draws_are_exponential_and_reproducible():
    samples = [draw("exponential", 0, 0, t, "s") for t in range(1, 20001)]
    mean = sum(samples) / len(samples)
    var = sum((x - mean) ** 2 for x in samples) / len(samples)
    assert abs(mean - 1) < 0.03 and abs(var - 1) < 0.08  # Exp(1): mean 1, variance 1
    assert draw("exponential", 0, 0, 5, "s") == draw("exponential", 0, 0, 5, "s")
    assert draw("exponential", 0, 0, 5, "s") != draw("exponential", 1, 0, 5, "s")


def test_seed_changes_the_trajectory_and_resume_redraws_the_same():
    def run(seed, steps=6, resume_at=None):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(50))
        opt = optforge.RandomScaledSGDM([p], lr=0.1, seed=seed)
        for k in range(steps):
            if k == resume_at:
                saved = opt.state_dict()
                opt = optforge.RandomScaledSGDM([p], lr=0.1, seed=seed)
                opt.load_state_dict(saved)
            p.grad = torch.full_like(p, 1.0)
            opt.step()
        return p.detach().clone()
    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    assert torch.equal(run(3), run(3, resume_at=3))


def test_random_scalar_errors_are_named():
    def bad_dist(lr=0.1):
        return Rule(param() - lr * random_scalar("s", "cauchy") * grad())

    def clash(lr=0.1):
        return Rule(param() - lr * random_scalar("lr") * grad())

    with pytest.raises(DSLError, match="distribution 'cauchy'; supported"):
        RuleSpec(bad_dist).build()
    with pytest.raises(DSLError, match="random scalar 'lr' has the name of a hyperparameter"):
        RuleSpec(clash).build()
