"""Muon vs torch.optim.Muon and vs a plain-torch implementation of the update.

Convention: identical to torch.optim.Muon (bfloat16 Newton-Schulz on the wide orientation,
decoupled weight decay, lr scaled by sqrt(max(1, A/B)) or 0.2 sqrt(max(A, B))).

Tolerances. Without Nesterov the update reaching the bfloat16 iteration is bit-identical to
torch's, and so are the parameters (1e-6). With Nesterov, torch mixes g and the buffer with
``grad.lerp(buf, momentum)``, whose weight >= 0.5 branch computes ``1 - momentum`` in float32
while optforge folds it on the host in float64: one float32 ulp apart, enough to flip some
bfloat16 roundings of the update. A bfloat16 rounding changes an update element by at most
2^-8 relative; the update moves p by lr per step, so after k steps the trajectories may
differ by up to k * lr * 2^-8 relative (BF16_TOL); we measured 2e-5 to 5e-5. The plain
implementation below associates the quintic differently ((bA + cA^2)X rather than addmm),
which is the same bound.
"""
import pytest
import torch

import optforge
from optforge.catalogue.muon import Muon
from optforge.compiler import lower, traffic
from tests.conftest import norm_rel, run_side_by_side

SHAPES = [(64, 32), (32, 64), (128, 128)]
LR, STEPS = 2e-2, 10
BF16_TOL = STEPS * LR * 2 ** -8


def plain_newton_schulz(g, steps=5, a=3.4445, b=-4.7750, c=2.0315, eps=1e-7):
    x = g.bfloat16()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


class PlainMuon(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                buf.mul_(mu).add_(p.grad, alpha=1 - mu)
                update = (1 - mu) * p.grad + mu * buf  # Nesterov
                a, b = p.shape
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(plain_newton_schulz(update), alpha=-group["lr"] * max(1, a / b) ** 0.5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(nesterov=False, weight_decay=0.0),
                                dict(adjust_lr_fn="match_rms_adamw", momentum=0.9)], ids=str)
def test_matches_torch_muon(shape, kw):
    ours_kw = {k: v for k, v in kw.items() if k != "adjust_lr_fn"}
    if "adjust_lr_fn" in kw:
        ours_kw["match_rms_adamw"] = True
    ours, ref, _, _ = run_side_by_side(lambda ps: Muon(ps, lr=LR, **ours_kw),
                                       lambda ps: torch.optim.Muon(ps, lr=LR, **kw),
                                       shape, steps=STEPS)
    assert norm_rel(ours, ref) < (1e-6 if kw.get("nesterov") is False else BF16_TOL)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_plain_implementation(shape):
    ours, ref, _, _ = run_side_by_side(lambda ps: Muon(ps, lr=LR),
                                       lambda ps: PlainMuon(ps, lr=LR), shape, steps=STEPS)
    assert norm_rel(ours, ref) < BF16_TOL


def test_update_is_orthogonal():
    """One step from zero momentum: the step's singular values are all close to 1."""
    p = torch.nn.Parameter(torch.zeros(64, 32))
    p.grad = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    Muon([p], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False).step()
    s = torch.linalg.svdvals(-p.detach() / 2 ** 0.5)  # undo the sqrt(A/B) lr scale
    assert 0.5 < s.min() and s.max() < 1.5  # the quintic's known band around 1


def test_conv_weights_use_the_2d_view_and_vectors_are_refused():
    w = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
    w.grad = torch.randn(8, 3, 3, 3)
    Muon([w]).step()
    b = torch.nn.Parameter(torch.zeros(8))
    b.grad = torch.ones(8)
    with pytest.raises(ValueError, match=r"parameter 0 of group 0 has shape \(8,\); the rule "
                                         "uses matrix operations"):
        Muon([b]).step()


def test_muon_plus_adamw_for_the_rest_trains_an_mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    x = torch.randn(256, 16)
    y = torch.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    hidden = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opts = [Muon(hidden, lr=2e-2, weight_decay=0.0), optforge.AdamW(rest, lr=1e-2)]
    for _ in range(200):
        for o in opts:
            o.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        for o in opts:
            o.step()
    assert loss.item() < 0.05


def test_plan_has_one_matrix_stage_and_every_backend_fuses_the_rest():
    spec = Muon.rule
    plan = lower(spec.build(), spec.hyper_symbols)
    (stage,) = plan.matrix_stages
    ((name, node),) = stage.outputs
    assert name == "mat0" and node.dtype == "bfloat16"
    # pre-stage: g, buf read; buf, bf16 pre0 written. matrix stage: pre0 read, bf16 mat0
    # written. update: p, mat0 read; p written
    assert plan.states["pre0"].dtype == plan.states["mat0"].dtype == "bfloat16"
    assert traffic(plan).total == (2 * 4 + 4 + 2) + (2 + 2) + (4 + 2 + 4)
    from optforge.runtime.backends import BACKENDS
    others = [n for n in BACKENDS if n != "torch"
              and BACKENDS[n].supports(torch.device("cpu"), torch.float32)]
    results = {}
    for backend in ["torch"] + others:  # momentum + Nesterov, then decay + update: fused
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(8, 4))
        opt = Muon([w], backend=backend, lr=0.1)
        for _ in range(3):
            w.grad = torch.randn(8, 4)
            opt.step()
        results[backend] = w.detach().clone()
    for backend in others:
        assert torch.allclose(results[backend], results["torch"], rtol=0, atol=1e-6), backend


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw", None])
def test_adjust_lr_fn_is_torchs(adjust):
    """torch's own keyword (not only match_rms_adamw), kept in param_groups as torch does."""
    ours, ref, _, _ = run_side_by_side(lambda ps: Muon(ps, lr=LR, adjust_lr_fn=adjust),
                                       lambda ps: torch.optim.Muon(ps, lr=LR, adjust_lr_fn=adjust),
                                       SHAPES[0], steps=STEPS)
    assert norm_rel(ours, ref) < BF16_TOL
    assert Muon([torch.nn.Parameter(torch.ones(2, 2))], adjust_lr_fn=adjust).param_groups[0][
        "adjust_lr_fn"] == adjust


def test_adjust_lr_fn_refused_like_torch():
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="Adjust learning rate function arbitrary is not supported"):
        Muon([p], adjust_lr_fn="arbitrary")
    with pytest.raises(ValueError, match="disagree"):
        Muon([p], adjust_lr_fn="original", match_rms_adamw=True)
