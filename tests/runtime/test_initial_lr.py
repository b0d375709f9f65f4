"""``initial_lr()``: the lr a param group started from (torch's schedulers'
``group["initial_lr"]``, else the current lr) as a rule symbol (issue 15)."""
import pytest
import torch

import optforge
from optforge.dsl import DSLError, Rule, RuleSpec, grad, initial_lr, param


def sgd_at_scaled_lr(lr=0.1, scale=1.0):
    """Steps with lr^2 / initial_lr: reveals both values the rule saw."""
    return Rule(param() - scale * lr * lr / initial_lr() * grad())


def _seen(make_sched, steps, backend):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = optforge.Optimizer([p], sgd_at_scaled_lr, backend=backend, lr=0.4)
    sched = make_sched(opt)
    seen, expected = [], []
    for _ in range(steps):
        lr, lr0 = opt.param_groups[0]["lr"], opt.param_groups[0].get("initial_lr", 0.4)
        expected.append(lr * lr / lr0)
        before = p.detach().clone()
        p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
        seen.append(float((before - p.detach())[0]))
    return seen, expected


def test_without_a_scheduler_initial_lr_is_the_lr(backend):
    seen, _ = _seen(lambda o: None, 2, backend)
    assert seen == pytest.approx([0.4, 0.4], rel=1e-12)


def test_under_a_scheduler_initial_lr_is_where_it_started(backend):
    seen, expected = _seen(
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 6, backend)
    assert expected[-1] == pytest.approx(0.4 * 0.25 * 0.25)  # the lr really moved
    assert seen == pytest.approx(expected, rel=1e-12)


def test_initial_lr_needs_an_lr_hyperparameter():
    def rule(step_size=0.1):
        return Rule(param() - step_size / initial_lr() * grad())

    with pytest.raises(DSLError, match="initial_lr\\(\\) but has no scalar hyperparameter 'lr'"):
        RuleSpec(rule).build()
    with pytest.raises(DSLError, match="reserved"):
        RuleSpec(lambda initial_lr=0.1: Rule(param() - grad())).build()
