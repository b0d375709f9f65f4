"""AdaGrad-Norm (Ward, Wu & Bottou 2019) and AdAdaGrad-Norm (Lau, Liu & Kolar 2024) vs a
plain-torch implementation over a multi-tensor param group:

    b^2 <- b^2 + ||g||^2 (all tensors of the group);  p <- p - lr g / (sqrt(b^2) + eps)

and the norm-test helper vs the formula of the official AdAdaGrad code (tests.py
norm_test), computed here from per-sample gradients flattened into one matrix.
"""
import math

import pytest
import torch

from optforge.catalogue.adagrad_norm import AdAdaGradNorm, AdagradNorm, norm_test_batch_size
from tests.catalogue.group_side_by_side import group_rel, run_group_side_by_side
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class RefAdaGradNorm(torch.optim.Optimizer):
    def __init__(self, params, lr=1.0, initial_accumulator_value=1e-2, eps=1e-10):
        super().__init__(params, dict(lr=lr, eps=eps))
        self.b2 = torch.tensor(initial_accumulator_value, dtype=torch.float32)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            grads = [p.grad for p in group["params"]]
            self.b2 = self.b2 + torch.cat([g.reshape(-1) for g in grads]).square().sum()
            for p, g in zip(group["params"], grads):
                p.sub_(group["lr"] * g / (self.b2.sqrt() + group["eps"]))


CASES = {"default": dict(), "tuned": dict(lr=0.3, initial_accumulator_value=4.0, eps=1e-6)}


@pytest.mark.parametrize("cls", [AdagradNorm, AdAdaGradNorm])
@pytest.mark.parametrize("case", CASES)
def test_group_accumulator_matches_reference(case, backend, cls):
    kw = CASES[case]
    made = {}

    def make(key, factory):
        def build(ps):
            made[key] = factory(ps)
            return made[key]
        return build

    ours, refs = run_group_side_by_side(make("ours", lambda ps: cls(ps, backend=backend, **kw)),
                                        make("ref", lambda ps: RefAdaGradNorm(ps, **kw)))
    assert group_rel(ours, refs) < 1e-6
    for p in made["ours"].param_groups[0]["params"]:
        acc = made["ours"].state[p]["sum"]  # the scalar, replicated in every element
        assert acc.shape == p.shape
        assert torch.allclose(acc, made["ref"].b2.expand_as(acc), rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_single_tensor_matches_reference(shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: AdagradNorm(ps, backend=backend, lr=0.5),
                                       lambda ps: RefAdaGradNorm(ps, lr=0.5), shape)
    assert norm_rel(ours, ref) < 1e-6


def _official_norm_test(per_sample, eta):
    flat = torch.cat([x.double().reshape(x.shape[0], -1) for x in per_sample], dim=1)
    b = flat.shape[0]
    mean = flat.mean(0)
    var_l1 = ((flat - mean).square().sum(0) / (b - 1)).sum()
    return math.ceil(max(b, float(var_l1 / (eta**2 * mean.square().sum()))))


@pytest.mark.parametrize("noise", [0.01, 10.0, 30.0])
def test_norm_test_batch_size_matches_the_official_formula(noise):
    gen = torch.Generator().manual_seed(0)
    b = 16
    signal = [torch.randn(s, generator=gen) for s in [(7, 13), (5,)]]
    per_sample = [sig + noise * torch.randn((b, *sig.shape), generator=gen) for sig in signal]
    got = AdAdaGradNorm.norm_test_batch_size(per_sample, eta=0.5)
    assert got == norm_test_batch_size(per_sample, eta=0.5) == _official_norm_test(per_sample, 0.5)
    assert (got == b) == (noise == 0.01)  # low noise keeps b; high noise asks for more
    assert norm_test_batch_size(per_sample, eta=0.5, max_batch_size=20) == min(got, 20)


def test_norm_test_with_zero_mean_gradient_returns_the_cap():
    per_sample = [torch.tensor([[1.0, -2.0], [-1.0, 2.0]])]
    assert norm_test_batch_size(per_sample, eta=0.1) == 2
    assert norm_test_batch_size(per_sample, eta=0.1, max_batch_size=512) == 512
