"""Parameter routing: one optimizer, a matrix rule for 2-D weights and AdamW for the rest."""
import copy

import pytest
import torch

import optforge
from optforge.catalogue.adamw import adamw


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def _train(opts, model, steps=5):
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        for o in opts:
            o.zero_grad()
        model(x).square().mean().backward()
        for o in opts:
            o.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("other", [optforge.AdamW, "AdamW", adamw, optforge.AdamW.rule],
                         ids=["class", "name", "function", "spec"])
def test_one_routed_optimizer_equals_two_optimizers(backend, other):
    a, b = _mlp(), _mlp()
    routed = optforge.Muon(optforge.split_matrix_params(a, other=other, lr=3e-3,
                                                        weight_decay=0.0),
                           lr=0.02, backend=backend)
    hidden = [p for p in b.parameters() if p.dim() == 2]
    rest = [p for p in b.parameters() if p.dim() < 2]
    two = [optforge.Muon(hidden, lr=0.02, backend=backend),
           optforge.AdamW(rest, lr=3e-3, weight_decay=0.0, backend=backend)]
    for x, y in zip(_train([routed], a), _train(two, b)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert "momentum" not in routed.param_groups[1]  # no Muon keys in the AdamW group
    assert routed.param_groups[1]["betas"] == (0.9, 0.999)


def test_schedulers_and_checkpoints_see_every_group():
    model = _mlp()
    opt = optforge.Muon(optforge.split_matrix_params(model, lr=1e-3), lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train([opt], model, steps=2)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.01, 5e-4]
    clone = _mlp()
    restored = optforge.Muon(optforge.split_matrix_params(clone, lr=1e-3), lr=0.02)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))  # as torch.save would
    with torch.no_grad():
        for p, q in zip(clone.parameters(), model.parameters()):
            p.copy_(q)
    for x, y in zip(_train([opt], model, 3), _train([restored], clone, 3)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_exclude_and_errors():
    model = _mlp()
    head = model[2].weight
    groups = optforge.split_matrix_params(model, exclude=[head])
    assert [len(g["params"]) for g in groups] == [1, 3]
    with pytest.raises(ValueError, match="'NoSuchRule' is not in the catalogue"):
        optforge.Muon([{"params": [head], "rule": "NoSuchRule"}])
    # a key the group's rule does not read is a warning (torch accepts any key); momentum
    # in an AdamW group is its first beta (schedulers cycle it there, test_group_keys)
    with pytest.warns(UserWarning, match=r"key\(s\) \['nesterov'\]"):
        optforge.Muon([{"params": [head], "rule": "AdamW", "nesterov": True}])
    with pytest.raises(TypeError, match='"rule" must be'):
        optforge.Muon([{"params": [head], "rule": 3}])
    bias = model[0].bias
    bias.grad = torch.ones_like(bias)
    with pytest.raises(ValueError, match="has shape \\(16,\\); the rule uses matrix operations"):
        optforge.Muon([bias]).step()
