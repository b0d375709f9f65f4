"""Checkpoints: optforge round trips are bitwise; torch.optim.AdamW checkpoints load and resume."""
import copy
import io

import torch

import optforge
from tests.conftest import norm_rel


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(13, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def _train(model, opt, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 13, generator=gen)
        y = torch.randn(16, 3, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_state_dict_round_trip_is_bitwise(backend):
    model = _model()
    opt = optforge.AdamW(model.parameters(), lr=1e-2, amsgrad=True, backend=backend)
    _train(model, opt, 3, seed=1)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), _roundtrip(opt.state_dict())

    # continue the original
    _train(model, opt, 4, seed=2)
    # and a restored copy
    model2 = _model(seed=99)
    model2.load_state_dict(saved_model)
    opt2 = optforge.AdamW(model2.parameters(), lr=0.5, backend=backend)
    opt2.load_state_dict(saved_opt)
    _train(model2, opt2, 4, seed=2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_torch_adamw_checkpoint_resumes_identically(backend):
    torch_model = _model()
    torch_opt = torch.optim.AdamW(torch_model.parameters(), lr=1e-2, weight_decay=0.1,
                                  foreach=False)
    _train(torch_model, torch_opt, 5, seed=3)
    checkpoint = _roundtrip({"model": torch_model.state_dict(), "opt": torch_opt.state_dict()})

    ours_model = _model(seed=7)
    ours_model.load_state_dict(checkpoint["model"])
    ours_opt = optforge.AdamW(ours_model.parameters(), backend=backend)
    ours_opt.load_state_dict(checkpoint["opt"])
    assert ours_opt.param_groups[0]["lr"] == 1e-2  # hyperparameters come from the checkpoint

    _train(torch_model, torch_opt, 5, seed=4)
    _train(ours_model, ours_opt, 5, seed=4)
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        assert norm_rel(a.detach(), b.detach()) < 1e-6
    for p_ours, p_ref in zip(ours_model.parameters(), torch_model.parameters()):
        assert float(ours_opt.state[p_ours]["step"]) == float(torch_opt.state[p_ref]["step"]) == 10


def test_optforge_adamw_checkpoint_loads_into_torch():
    model = _model()
    opt = optforge.AdamW(model.parameters(), lr=1e-2)
    _train(model, opt, 2, seed=5)
    torch_opt = torch.optim.AdamW(model.parameters())
    torch_opt.load_state_dict(_roundtrip(opt.state_dict()))
    _train(model, torch_opt, 1, seed=6)  # runs without complaint
    assert all(float(s["step"]) == 3 for s in torch_opt.state.values())


def test_bad_checkpoint_shape_is_reported():
    model = _model()
    opt = optforge.Adam(model.parameters())
    _train(model, opt, 1, seed=0)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(5)
    opt2 = optforge.Adam(_model().parameters())
    try:
        opt2.load_state_dict(sd)
    except ValueError as exc:
        assert "exp_avg" in str(exc) and "shape" in str(exc)
    else:
        raise AssertionError("a mis-shaped state loaded silently")
