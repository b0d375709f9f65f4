"""AdafactorOriginal (Shazeer & Stern's options) matches HF transformers' Adafactor formula,
written below in plain torch from transformers.optimization.Adafactor.step (transformers
is not a dependency), over 20 steps on every backend (triton under the interpreter on CPU
machines, fewer steps): relative step with and without warmup, parameter scaling, update
clipping, the optional first moment, weight decay; matrices factored, vectors and scalars
not. Tolerance: float32 norm-relative 1e-6.
"""
import math

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.dsl import DSLError
from optforge.runtime.backends import BACKENDS
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
DEFAULTS = dict(lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False)
CONFIGS = [
    dict(),
    dict(lr=1e-2, relative_step=False, scale_parameter=False, weight_decay=0.1),
    dict(beta1=0.9, warmup_init=True, clip_threshold=0.5, weight_decay=0.01, decay_rate=-0.5),
]


class HFAdafactor(torch.optim.Optimizer):
    """transformers.optimization.Adafactor's step (float32 parameters), in plain torch."""

    def __init__(self, params, **kw):
        super().__init__(params, {**DEFAULTS, **kw})

    @staticmethod
    def _rms(x):
        return x.norm(2) / (x.numel() ** 0.5)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                self._step(p, p.grad, group, self.state[p])

    def _step(self, p, grad, group, state):
        factored, shape = grad.dim() >= 2, grad.shape
        if not state:
            state["step"] = 0
            if group["beta1"] is not None:
                state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                state["row"] = torch.zeros(shape[:-1])
                state["col"] = torch.zeros(shape[:-2] + shape[-1:])
            else:
                state["sq"] = torch.zeros_like(grad)
        state["step"] += 1
        rms = self._rms(p)
        lr = group["lr"]
        if group["relative_step"]:
            min_step = 1e-6 * state["step"] if group["warmup_init"] else 1e-2
            lr = min(min_step, 1.0 / math.sqrt(state["step"]))
        if group["scale_parameter"]:
            lr = max(group["eps"][1], rms) * lr
        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = grad**2 + group["eps"][0]
        if factored:
            state["row"].mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
            state["col"].mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
            r = (state["row"] / state["row"].mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r, state["col"].unsqueeze(-2).rsqrt()).mul_(grad)
        else:
            state["sq"].mul_(beta2t).add_(update, alpha=1.0 - beta2t)
            update = state["sq"].rsqrt().mul_(grad)
        update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if group["beta1"] is not None:
            state["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = state["exp_avg"]
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * lr)
        p.add_(-update)


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


@pytest.mark.parametrize("shape", SHAPES + [()], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
def test_matches_the_hf_formula(kw, shape, backend):
    ours, ref, o1, _ = run_side_by_side(
        lambda ps: optforge.AdafactorOriginal(ps, backend=backend, **kw),
        lambda ps: HFAdafactor(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (state,) = o1.state.values()
    assert ("exp_avg" in state) == (kw.get("beta1") is not None)


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
def test_matches_the_hf_formula_on_triton(shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    kw = CONFIGS[2]
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.AdafactorOriginal(ps, backend="triton", **kw),
        lambda ps: HFAdafactor(ps, **kw), shape, steps=6)
    assert norm_rel(ours, ref) < TOL


def test_second_moment_is_rows_plus_cols():
    p = torch.nn.Parameter(torch.zeros(4096, 4096))
    opt = optforge.AdafactorOriginal([p], backend="torch")
    p.grad = torch.ones_like(p)
    opt.step()
    stored = sum(v.untyped_storage().nbytes() for k, v in opt.state[p].items() if k != "step")
    assert stored == (4096 + 4096) * 4


@pytest.mark.parametrize("kw, message", [
    (dict(lr=1e-3), "Cannot combine manual `lr` and `relative_step=True`"),
    (dict(relative_step=False), "needs an `lr`"),
    (dict(lr=1e-3, relative_step=False, warmup_init=True), "requires `relative_step=True`"),
])
def test_hf_option_errors(kw, message):
    with pytest.raises((ValueError, DSLError), match=message):
        optforge.AdafactorOriginal([torch.nn.Parameter(torch.zeros(3))], **kw)
