"""A first step that compiles for long says so, once, naming the rule and the kernels."""
from __future__ import annotations

import logging
import time

import torch

import optforge
from optforge.runtime import progress


def _step(opt, p):
    p.grad = torch.ones_like(p)
    opt.step()


def test_a_slow_first_step_is_announced_once(monkeypatch, caplog):
    monkeypatch.setattr(progress, "SLOW_AFTER_S", 0.0)  # every first step is "slow" now
    p = torch.nn.Parameter(torch.zeros(10))
    opt = optforge.LAMB([p], backend="torch")
    with caplog.at_level(logging.WARNING, logger="optforge"):
        _step(opt, p)
        _step(opt, p)
    messages = [r.getMessage() for r in caplog.records if r.name == "optforge"]
    assert len(messages) == 2, messages
    assert "compiling rule LAMB (torch kernels for float32)" in messages[0]
    assert messages[1].startswith("optforge: compiled in ")


def test_a_fast_first_step_says_nothing(caplog):
    p = torch.nn.Parameter(torch.zeros(10))
    opt = optforge.SGD([p], backend="torch")
    _step(opt, p)  # warm: this rule's kernels are loaded now
    opt2 = optforge.SGD([torch.nn.Parameter(torch.zeros(10))], backend="torch")
    with caplog.at_level(logging.WARNING, logger="optforge"):
        _step(opt2, opt2.param_groups[0]["params"][0])
    assert not [r for r in caplog.records if r.name == "optforge"]


def test_the_notice_comes_during_the_pause_not_after(caplog):
    seen = []
    with caplog.at_level(logging.WARNING, logger="optforge"):
        with progress.announce_if_slow(lambda: "something", after_s=0.05):
            time.sleep(0.3)
            seen = [r.getMessage() for r in caplog.records]
    assert seen and "compiling something" in seen[0]
