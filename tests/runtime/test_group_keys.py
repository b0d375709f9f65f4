"""Param-group keys: a routed group inherits the constructor's shared hyperparameters,
keys no rule reads are warnings, and a scheduler's ``momentum`` drives an AdamW group's
first beta (issue 15)."""
import warnings

import pytest
import torch

import optforge
from tests.conftest import norm_rel


def _grads(shape, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for _ in range(steps)]


def _run(opt, params, steps, sched=None):
    # a parameter's gradients are seeded by its size, the same in both optimizers
    for grads in zip(*[_grads(p.shape, steps, seed=p.numel()) for p in params]):
        for p, g in zip(params, grads):
            p.grad = g + p.detach()
        opt.step()
        if sched is not None:
            sched.step()


def test_routed_group_inherits_the_constructors_shared_hyperparameters(backend):
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(7))
    b_ref = torch.nn.Parameter(b.detach().clone())
    opt = optforge.SGD([{"params": [a]}, {"params": [b], "rule": "AdamW"}], lr=0.05,
                       momentum=0.9, weight_decay=0.3, backend=backend)
    group = opt.param_groups[1]
    # lr and weight_decay are AdamW's too: taken from the constructor; momentum is not
    # an AdamW hyperparameter (betas keep AdamW's defaults)
    assert (group["lr"], group["weight_decay"], group["betas"]) == (0.05, 0.3, (0.9, 0.999))
    assert "momentum" not in group and "dampening" not in group
    ref = torch.optim.AdamW([b_ref], lr=0.05, weight_decay=0.3, foreach=False)
    _run(opt, [a, b], 6)
    _run(ref, [b_ref], 6)
    assert norm_rel(b.detach(), b_ref.detach()) < 1e-6


def test_a_groups_own_value_beats_the_constructors():
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    opt = optforge.SGD([{"params": [a]}, {"params": [b], "rule": "AdamW", "lr": 1e-3}],
                       lr=0.05, weight_decay=0.3)
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[1]["weight_decay"] == 0.3


def test_a_key_no_rule_reads_is_a_warning_naming_key_and_group():
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    with pytest.warns(UserWarning, match=r"param group 1 has key\(s\) \['weight_decy'\]"):
        opt = optforge.AdamW([{"params": [a]}, {"params": [b], "weight_decy": 0.1}])
    assert opt.param_groups[1]["weight_decay"] == 0.01  # the typo changed nothing
    with pytest.raises(TypeError, match="weight_decy"):  # constructor keywords: as torch
        optforge.AdamW([a], weight_decy=0.1)
    for key in ("name", "initial_lr", "momentum"):  # fine in a group, not as a keyword
        with pytest.raises(TypeError, match=key):
            optforge.AdamW([a], **{key: 0.1})


def test_keys_torch_and_schedulers_add_do_not_warn():
    a = torch.nn.Parameter(torch.randn(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = optforge.AdamW([{"params": [a], "name": "decoder", "initial_lr": 1e-3,
                               "foreach": False, "fused": None, "capturable": False,
                               "differentiable": False}])
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5)
        cyclic = torch.optim.lr_scheduler.CyclicLR(opt, 1e-3, 1e-2, cycle_momentum=False)
        for _ in range(3):
            a.grad = torch.ones(3)
            opt.step()
            sched.step()
            cyclic.step()


def test_a_key_written_later_warns_once_at_the_next_step():
    a = torch.nn.Parameter(torch.randn(3))
    opt = optforge.Adagrad([a], lr=0.1)
    a.grad = torch.ones(3)
    opt.param_groups[0]["momentum"] = 0.9  # Adagrad has no momentum and no betas
    with pytest.warns(UserWarning, match=r"param group 0 has key\(s\) \['momentum'\]"):
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()  # said once


def test_momentum_alias_is_checked_like_a_beta():
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=r"momentum=1.5 in param group 1 stands for betas\[0\]"):
        optforge.SGD([{"params": [a]}, {"params": [b], "rule": "AdamW", "momentum": 1.5}],
                     lr=0.1)


def test_onecycle_momentum_drives_beta1_of_a_routed_adamw_group(backend):
    """The optimizer's defaults have ``momentum`` (SGD), so OneCycleLR cycles
    ``group["momentum"]`` in every group; in the AdamW group that is beta_1, as
    torch.optim.AdamW under the same scheduler sees it through ``betas``."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(300))
    b_ref = torch.nn.Parameter(b.detach().clone())
    opt = optforge.SGD([{"params": [a]}, {"params": [b], "rule": "AdamW"}], lr=0.01,
                       momentum=0.9, backend=backend)
    ref = torch.optim.AdamW([b_ref], lr=0.01, foreach=False)
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # momentum is read: no unread-key warning
        _run(opt, [a, b], 20, make(opt))
    _run(ref, [b_ref], 20, make(ref))
    assert opt.param_groups[1]["momentum"] != 0.9  # the schedule really moved it
    assert norm_rel(b.detach(), b_ref.detach()) < 1e-6
