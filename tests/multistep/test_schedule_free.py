"""ScheduleFreeAdamW / ScheduleFreeSGD against Alg. 1 of Defazio et al. (2024) written
literally in its (x, z) form: y = (1 - b1) z + b1 x, g = grad f(y), z -= gamma_t u,
x = (1 - c) x + c z, with gamma_t, c as the paper (and the authors' code) define them.
Ours stores y in the parameter and x nowhere, so train mode is checked against y and
eval() against x. ScheduleFreeSGD is also checked against pytorch-optimizer's
ScheduleFreeSGD (which matches the paper; its AdamW does not, see schedule_free.py).

Tolerances. float64 on the torch backend: the y-form update and the (x, z) form are the same
algebra with different rounding (~1e-16 per step), carried through 25 steps of a nonlinear
gradient: 1e-12 relative (observed 3e-16). float32 on every backend vs the float64
reference: float32 rounding (6e-8 per operation) over 25 steps, observed <= 1.3e-7
relative: checked at 1e-6.
"""
import copy
import math

import pytest
import torch

import optforge
from optforge.multistep import ScheduleFreeAdamW, ScheduleFreeSGD

SETTINGS = {
    "adamw": (ScheduleFreeAdamW, dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01,
                                      warmup_steps=5, r=0.0, weight_lr_power=2.0)),
    "adamw_r": (ScheduleFreeAdamW, dict(lr=0.02, betas=(0.8, 0.999), weight_decay=0.0,
                                        warmup_steps=0, r=1.0, weight_lr_power=1.0)),
    "sgd": (ScheduleFreeSGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01, warmup_steps=5)),
}


def loss_fn(v, centre):
    return ((v - centre) ** 2 * torch.linspace(0.5, 2.0, v.numel(), dtype=v.dtype)).sum() \
        + 0.3 * torch.sin(2 * v).sum()


def start(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen, dtype=torch.float64), \
        torch.randn(n, generator=gen, dtype=torch.float64)


def paper_reference(kind, hyper, x1, centre, steps):
    """Alg. 1 in (x, z) form, float64. Returns (y, x) after ``steps`` steps."""
    adam = kind.startswith("adamw")
    b1 = hyper["betas"][0] if adam else hyper["momentum"]
    b2 = hyper["betas"][1] if adam else None
    x, z, v = x1.clone(), x1.clone(), torch.zeros_like(x1)
    lr_max, weight_sum = -1.0, 0.0
    for t in range(1, steps + 1):
        y = ((1 - b1) * z + b1 * x).requires_grad_()
        g = torch.autograd.grad(loss_fn(y, centre), y)[0]
        y = y.detach()
        warm = hyper.get("warmup_steps", 0)
        gamma = hyper["lr"] * (t / warm if t < warm else 1.0)
        if adam:
            v = b2 * v + (1 - b2) * g * g
            gamma *= math.sqrt(1 - b2 ** t)
            u = g / (v.sqrt() + hyper.get("eps", 1e-8)) + hyper["weight_decay"] * y
        else:
            u = g + hyper["weight_decay"] * y
        z = z - gamma * u
        lr_max = max(lr_max, gamma)
        w = t ** hyper.get("r", 0.0) * lr_max ** hyper.get("weight_lr_power", 2.0)
        weight_sum += w
        c = w / weight_sum
        x = (1 - c) * x + c * z
    return (1 - b1) * z + b1 * x, x


def run_ours(cls, hyper, x1, centre, steps, dtype=torch.float64, backend="torch"):
    p = torch.nn.Parameter(x1.clone().to(dtype))
    opt = cls([p], **hyper, backend=backend)
    opt.train()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(p, centre.to(dtype)).backward()
        opt.step()
    return p, opt


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_matches_the_paper_in_float64(kind):
    cls, hyper = SETTINGS[kind]
    x1, centre = start()
    y_ref, x_ref = paper_reference(kind, hyper, x1, centre, 25)
    p, opt = run_ours(cls, hyper, x1, centre, 25)
    assert rel(p.detach(), y_ref) <= 1e-12
    opt.eval()
    assert rel(p.detach(), x_ref) <= 1e-12
    opt.train()
    assert rel(p.detach(), y_ref) <= 1e-12
    assert rel(x_ref, y_ref) > 1e-3             # y and x differ: the swap is checked
    assert opt.param_groups[0]["k"] == 25 and set(opt.state[p]) >= {"z"}


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_every_backend_in_float32(kind, backend):
    cls, hyper = SETTINGS[kind]
    x1, centre = start(seed=1)
    y_ref, x_ref = paper_reference(kind, hyper, x1.float().double(), centre.float().double(),
                                   25)
    p, opt = run_ours(cls, hyper, x1, centre, 25, torch.float32, backend)
    assert rel(p.detach(), y_ref) <= 1e-6
    opt.eval()
    assert rel(p.detach(), x_ref) <= 1e-6


def test_sgd_matches_pytorch_optimizer():
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    _, hyper = SETTINGS["sgd"]
    x1, centre = start(seed=2)
    ours, opt = run_ours(ScheduleFreeSGD, hyper, x1, centre, 25)
    q = torch.nn.Parameter(x1.clone())
    ref = pytorch_optimizer.ScheduleFreeSGD([q], **hyper)
    ref.train()
    for _ in range(25):
        ref.zero_grad()
        loss_fn(q, centre).backward()
        ref.step()
    assert rel(ours.detach(), q.detach()) <= 1e-12
    opt.eval(), ref.eval()
    assert rel(ours.detach(), q.detach()) <= 1e-12


def test_checkpoint_in_eval_mode_loads_and_continues():
    cls, hyper = SETTINGS["adamw"]
    x1, centre = start(seed=3)
    p, opt = run_ours(cls, hyper, x1, centre, 7)
    opt.eval()                                   # the authors: save in eval mode
    saved, weights = copy.deepcopy(opt.state_dict()), p.detach().clone()
    assert {"k", "lr_max", "weight_sum", "train_mode"} <= set(saved["param_groups"][0])
    for st in saved["state"].values():           # the reference's state: no 'step' counter
        st.pop("step")
    q = torch.nn.Parameter(weights.clone())
    opt2 = cls([q], lr=1.0, backend="torch")
    opt2.load_state_dict(saved)
    for o, w in ((opt, p), (opt2, q)):
        o.train()
        for _ in range(5):
            o.zero_grad()
            loss_fn(w, centre).backward()
            o.step()
    assert torch.equal(p.detach(), q.detach())
    y_ref, _ = paper_reference("adamw", hyper, x1, centre, 12)
    assert rel(q.detach(), y_ref) <= 1e-12


def test_errors_leave_everything_untouched():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ScheduleFreeSGD([p], lr=0.1, backend="torch")
    p.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    opt.eval()
    before, groups = p.detach().clone(), copy.deepcopy(opt.param_groups[0]["k"])
    with pytest.raises(RuntimeError, match="in eval mode.*optimizer.train"):
        opt.step()
    assert torch.equal(p.detach(), before) and opt.param_groups[0]["k"] == groups
    assert optforge.ScheduleFreeAdamW is ScheduleFreeAdamW
    assert optforge.ScheduleFreeSGD is ScheduleFreeSGD
    with pytest.raises(ValueError, match="momentum = 1"):
        ScheduleFreeSGD([p], momentum=1)
    with pytest.raises(ValueError, match="betas"):
        ScheduleFreeAdamW([p], betas=(0.0, 0.999))
    with pytest.raises(ValueError, match="warmup_steps = -1 in the constructor"):
        ScheduleFreeAdamW([p], warmup_steps=-1)
    with pytest.raises(ValueError, match=r"betas = \(0.9, 1.0\) in param group 1"):
        ScheduleFreeAdamW([dict(params=[p]), dict(params=[torch.nn.Parameter(torch.ones(2))],
                                                   betas=(0.9, 1.0))])
    n_groups = len(opt.param_groups)
    with pytest.raises(ValueError, match="momentum = 0 in param group 1"):
        opt.add_param_group(dict(params=[torch.nn.Parameter(torch.ones(2))], momentum=0))
    assert len(opt.param_groups) == n_groups


def test_pytorch_optimizer_sgd_checkpoint_loads_and_continues():
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    _, hyper = SETTINGS["sgd"]
    x1, centre = start(seed=4)
    q = torch.nn.Parameter(x1.clone())
    ref = pytorch_optimizer.ScheduleFreeSGD([q], **hyper)
    ref.train()

    def steps(opt, w, n):
        for _ in range(n):
            opt.zero_grad()
            loss_fn(w, centre).backward()
            opt.step()
    steps(ref, q, 4)                             # inside the warmup: k matters
    p = torch.nn.Parameter(q.detach().clone())
    ours = ScheduleFreeSGD([p], backend="torch")
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert ours.param_groups[0]["k"] == 4
    steps(ref, q, 6)
    steps(ours, p, 6)
    assert rel(p.detach(), q.detach()) <= 1e-12


def test_deepcopy_continues_like_the_original():
    cls, hyper = SETTINGS["sgd"]
    x1, centre = start(seed=5)
    p, opt = run_ours(cls, hyper, x1, centre, 3)
    model = {"p": p, "opt": opt}
    twin = copy.deepcopy(model)                  # params and optimizer copied together
    for w, o in ((p, opt), (twin["p"], twin["opt"])):
        for _ in range(3):
            o.zero_grad()
            loss_fn(w, centre).backward()
            o.step()
    assert torch.equal(p.detach(), twin["p"].detach()) and twin["opt"].param_groups[0]["k"] == 6
