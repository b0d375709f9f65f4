"""The optimizer's public per-step hooks (runtime/stepping.py): ``step_hyperparameters`` in
the collect stage, ``step_committed`` after the commit; subclasses (OASIS) adjust a step
through them instead of overriding the stages."""
import pytest
import torch

import optforge


class HalvingSGD(optforge.SGD):
    """SGD whose kernels read lr / 2^(number of committed steps); records every commit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commits = []

    def step_hyperparameters(self, index, group, params, given):
        if group["lr"] < 0:
            raise ValueError(f"group {index}: lr must be >= 0")
        return dict(group, lr=group["lr"] / 2 ** len(self.commits))

    def step_committed(self, index, group, hyper, skipped):
        self.commits.append((index, hyper["lr"], skipped))


def _param(value=1.0):
    p = torch.nn.Parameter(torch.full((5,), value))
    p.grad = torch.ones(5)
    return p


def test_the_kernels_read_the_returned_hyperparameters(backend):
    p = _param()
    opt = HalvingSGD([p], lr=0.5, backend=backend)
    opt.step()
    opt.step()
    # 1 - 0.5 - 0.25: the second step ran with lr / 2, the group's lr never changed
    assert torch.allclose(p.detach(), torch.full((5,), 0.25))
    assert opt.commits == [(0, 0.5, False), (0, 0.25, False)]
    assert opt.param_groups[0]["lr"] == 0.5


def test_a_hook_error_leaves_every_group_untouched(backend):
    a, b = _param(), _param(2.0)
    opt = HalvingSGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.5, backend=backend)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="group 1: lr must be >= 0"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(5)) and torch.equal(b.detach(), torch.full((5,), 2.0))
    assert opt.commits == [] and not opt.state


def test_a_skipped_step_is_committed_as_skipped(backend):
    p = _param()
    p.grad[0] = float("nan")
    opt = HalvingSGD([p], lr=0.5, backend=backend, skip_nonfinite=True)
    opt.step()
    assert opt.commits == [(0, 0.5, True)] and torch.equal(p.detach(), torch.ones(5))
    assert opt.param_groups[0]["nonfinite_skips"] == 1
