"""LR schedulers drive the rule: the lr each step uses is the scheduler's, with no recompiles."""
import pytest
import torch

import optforge
from optforge.runtime.compiled import STATS
from tests.conftest import norm_rel


def _lrs_seen_by_sgd(make_sched, steps, backend):
    """Plain SGD moves p by exactly -lr * g, so the step reveals the lr the rule used."""
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = optforge.SGD([p], lr=0.1, momentum=0.0, backend=backend)
    sched = make_sched(opt)
    seen, expected = [], []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        before = p.detach().clone()
        p.grad = torch.ones(4, dtype=torch.float64)
        opt.step()
        sched.step()
        seen.append(float((before - p.detach())[0]))
    return seen, expected


@pytest.mark.parametrize("make_sched", [
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=12, cycle_momentum=False),
], ids=["StepLR", "OneCycleLR"])
def test_rule_sees_scheduled_lr(make_sched, backend):
    seen, expected = _lrs_seen_by_sgd(make_sched, 12, backend)
    assert len(set(round(x, 12) for x in expected)) > 2  # the schedule really moves
    assert seen == pytest.approx(expected, rel=1e-12)


def test_onecycle_with_momentum_cycling_matches_torch(backend):
    """OneCycleLR also cycles betas[0]; both lr and beta1 reach the kernel each step."""
    def run(make_opt):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(300))
        opt = make_opt([p])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=15)
        gen = torch.Generator().manual_seed(1)
        for _ in range(15):
            p.grad = torch.randn(300, generator=gen) + p.detach()
            opt.step()
            sched.step()
        return p.detach()

    kernels_before = sum(v for k, v in STATS.items() if k.startswith("kernels"))
    ours = run(lambda ps: optforge.AdamW(ps, backend=backend))
    ref = run(lambda ps: torch.optim.AdamW(ps, foreach=False))
    assert norm_rel(ours, ref) < 1e-6
    # 15 different (lr, beta1) pairs, at most one compilation (the first use of the rule)
    assert sum(v for k, v in STATS.items() if k.startswith("kernels")) - kernels_before <= 1
