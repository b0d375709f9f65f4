"""torch.optim checkpoints load into optforge and continue as torch does, and back.

Each case: one optimizer runs N steps, its state dict goes through torch.save and
torch.load(weights_only=True), the other library's optimizer (built with default
hyperparameters: they come from the checkpoint) loads it, and both continue M steps on
the same gradients. One parameter gets its first gradient only after the checkpoint
(it has no state in it, or torch.optim.Adagrad's fresh one). Tolerance 1e-6 relative,
as the catalogue's own comparisons with torch.optim; Muon with Nesterov has the bf16
bound explained in tests/catalogue/test_muon.py.
"""
import io

import pytest
import torch

import optforge
from tests.conftest import norm_rel

N, M = 3, 3
MUON_LR = 0.02
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("Adamax", dict(lr=0.01, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, weight_decay=0.1)),
    ("Muon", dict(lr=MUON_LR, nesterov=False)),
    ("Muon", dict(lr=MUON_LR, nesterov=False, adjust_lr_fn="match_rms_adamw")),
    ("Muon", dict(lr=MUON_LR)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]


def _tolerance(name, kw):
    if name == "Muon" and kw.get("nesterov", True):
        return M * MUON_LR * 2 ** -8
    return 1e-6


def _ours_kw(kw):
    """optforge's spelling: Muon's adjust_lr_fn is its match_rms_adamw flag."""
    out = {k: v for k, v in kw.items() if k != "adjust_lr_fn"}
    if kw.get("adjust_lr_fn") == "match_rms_adamw":
        out["match_rms_adamw"] = True
    return out


def _params(name):
    """Two parameters that step from the start and one that steps only after the load."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 4), (4, 5), (3, 4)] if name == "Muon" else [(6, 4), (4,), (3,)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _copy(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def _run(opt, params, steps, first):
    for k in range(first, first + steps):
        for j, p in enumerate(params):
            late = j == len(params) - 1 and k < N
            gen = torch.Generator().manual_seed(100 * k + j)
            p.grad = None if late else torch.randn(p.shape, generator=gen) + 0.5 * p.detach()
        opt.step()


def _through_disk(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _compare(ours_opt, ours, ref_opt, ref, tol):
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach(), b.detach()) < tol
    # torch's SGD and Muon keep no step (loaded from optforge, it is left as it was)
    counts = not isinstance(ref_opt, (torch.optim.SGD, torch.optim.Muon))
    for a, b in zip(ours, ref):
        for key, value in ref_opt.state[b].items():
            if key == "step" and counts:
                assert float(ours_opt.state[a]["step"]) == float(value)
            elif key != "step":
                assert norm_rel(ours_opt.state[a][key], value) < tol, key


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_torch_checkpoint_continues_in_optforge(name, kw):
    ref = _params(name)
    ref_opt = getattr(torch.optim, name)(ref, **kw)
    _run(ref_opt, ref, N, 0)
    saved = _through_disk(ref_opt.state_dict())
    ours = _copy(ref)
    ours_opt = getattr(optforge, name)(ours)  # hyperparameters come from the checkpoint
    ours_opt.load_state_dict(saved)
    _run(ref_opt, ref, M, N)
    _run(ours_opt, ours, M, N)
    _compare(ours_opt, ours, ref_opt, ref, _tolerance(name, kw))


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_optforge_checkpoint_continues_in_torch(name, kw):
    ours = _params(name)
    ours_opt = getattr(optforge, name)(ours, **_ours_kw(kw))
    _run(ours_opt, ours, N, 0)
    saved = _through_disk(ours_opt.state_dict())
    ref = _copy(ours)
    ref_opt = getattr(torch.optim, name)(ref)
    ref_opt.load_state_dict(saved)
    _run(ours_opt, ours, M, N)
    _run(ref_opt, ref, M, N)
    _compare(ours_opt, ours, ref_opt, ref, _tolerance(name, kw))


def test_inferred_sgd_step_on_every_backend(backend):
    """torch.optim.SGD keeps no step: the buffer's presence says the next step damps."""
    kw = dict(lr=0.1, momentum=0.9, dampening=0.5)
    ref = _params("SGD")
    ref_opt = torch.optim.SGD(ref, **kw)
    _run(ref_opt, ref, N, 0)
    ours = _copy(ref)
    ours_opt = optforge.SGD(ours, backend=backend)
    ours_opt.load_state_dict(_through_disk(ref_opt.state_dict()))
    assert "step" not in ref_opt.state[ref[0]]
    assert float(ours_opt.state[ours[0]]["step"]) == 1  # "has stepped": the count restarts
    assert ours[2] not in ours_opt.state  # never stepped: fresh at its first step, as torch
    _run(ref_opt, ref, M, N)
    _run(ours_opt, ours, M, N)
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach(), b.detach()) < 1e-6


def test_the_sgd_rule_function_loads_torch_sgd_too():
    """optforge.Optimizer(params, sgd) runs the same rule as optforge.SGD."""
    from optforge.catalogue.sgd import sgd
    ref = _params("SGD")
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9, dampening=0.5)
    _run(ref_opt, ref, N, 0)
    ours = _copy(ref)
    ours_opt = optforge.Optimizer(ours, sgd)
    ours_opt.load_state_dict(_through_disk(ref_opt.state_dict()))
    _run(ref_opt, ref, M, N)
    _run(ours_opt, ours, M, N)
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach(), b.detach()) < 1e-6


def test_old_torch_sgd_none_buffer_starts_fresh():
    """torch.optim.SGD before 2.0 saved momentum_buffer=None for unstepped parameters."""
    ref = _params("SGD")
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9, dampening=0.5)
    _run(ref_opt, ref, N, 0)
    saved = ref_opt.state_dict()
    saved["state"][2] = {"momentum_buffer": None}
    ours = _copy(ref)
    ours_opt = optforge.SGD(ours)
    ours_opt.load_state_dict(saved)
    assert ours[2] not in ours_opt.state
    _run(ref_opt, ref, M, N)
    _run(ours_opt, ours, M, N)
    assert norm_rel(ours[2].detach(), ref[2].detach()) < 1e-6


def test_a_flag_turned_on_before_saving_gives_a_complete_checkpoint():
    """amsgrad turned on after some steps: the next step would create max_exp_avg_sq, so
    the checkpoint has it, and both optforge and torch.optim (KeyError before) continue
    as the original does."""
    ours = _params("Adam")
    ours_opt = optforge.Adam(ours, lr=0.01)
    _run(ours_opt, ours, N, 0)
    ours_opt.param_groups[0]["amsgrad"] = True
    saved = ours_opt.state_dict()
    assert "max_exp_avg_sq" not in ours_opt.state[ours[0]]  # the live state is untouched
    assert torch.equal(saved["state"][0]["max_exp_avg_sq"], torch.zeros(6, 4))
    resumed = _copy(ours)
    resumed_opt = optforge.Adam(resumed)
    resumed_opt.load_state_dict(_through_disk(saved))  # each its own tensors: a load
    ref = _copy(ours)                                  # keeps the dict's, as torch's does
    ref_opt = torch.optim.Adam(ref)
    ref_opt.load_state_dict(_through_disk(saved))
    for opt, params in [(ours_opt, ours), (resumed_opt, resumed), (ref_opt, ref)]:
        _run(opt, params, M, N)
    for a, b, c in zip(ours, resumed, ref):
        assert torch.equal(a, b) and norm_rel(a.detach(), c.detach()) < 1e-6
