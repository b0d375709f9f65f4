"""CAME matches the reference implementation's step (yangluo7/CAME, written below in plain
torch) over 20 steps on every backend (triton under the interpreter on CPU machines,
fewer steps): matrices (factored second moment and instability), vectors and scalars
(unfactored), with weight decay and update clipping; its factored states are rows + cols
values. Tolerance: float32 norm-relative 1e-6.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [dict(), dict(lr=1e-2, weight_decay=0.1, clip_threshold=0.5, betas=(0.8, 0.99, 0.999))]


class ReferenceCAME(torch.optim.Optimizer):
    """yangluo7/CAME's CAME.step, in plain torch."""

    def __init__(self, params, lr=2e-4, eps=(1e-30, 1e-16), clip_threshold=1.0,
                 betas=(0.9, 0.999, 0.9999), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, eps=eps, clip_threshold=clip_threshold,
                                      betas=betas, weight_decay=weight_decay))

    @staticmethod
    def _rms(x):
        return x.norm(2) / (x.numel() ** 0.5)

    @staticmethod
    def _approx(row, col):
        r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
        return torch.mul(r, col.unsqueeze(-2).rsqrt())

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                self._step(p, p.grad, group, self.state[p])

    def _step(self, p, grad, group, state):
        factored, shape = grad.dim() >= 2, grad.shape
        beta1, beta2, beta3 = group["betas"]
        if not state:
            state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                for name in ("sq", "res"):
                    state[f"{name}_row"] = torch.zeros(shape[:-1])
                    state[f"{name}_col"] = torch.zeros(shape[:-2] + shape[-1:])
            else:
                state["sq"] = torch.zeros_like(grad)
        update = grad**2 + group["eps"][0]
        if factored:
            state["sq_row"].mul_(beta2).add_(update.mean(dim=-1), alpha=1.0 - beta2)
            state["sq_col"].mul_(beta2).add_(update.mean(dim=-2), alpha=1.0 - beta2)
            update = self._approx(state["sq_row"], state["sq_col"]).mul_(grad)
        else:
            state["sq"].mul_(beta2).add_(update, alpha=1.0 - beta2)
            update = state["sq"].rsqrt().mul_(grad)
        update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        exp_avg = state["exp_avg"]
        exp_avg.mul_(beta1).add_(update, alpha=1 - beta1)
        res = (update - exp_avg) ** 2 + group["eps"][1]
        if factored:
            state["res_row"].mul_(beta3).add_(res.mean(dim=-1), alpha=1.0 - beta3)
            state["res_col"].mul_(beta3).add_(res.mean(dim=-2), alpha=1.0 - beta3)
            update = self._approx(state["res_row"], state["res_col"]).mul_(exp_avg)
        else:
            update = exp_avg.clone()
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * group["lr"])
        update.mul_(group["lr"])
        p.add_(-update)


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


@pytest.mark.parametrize("shape", SHAPES + [()], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
def test_came_matches_the_reference(kw, shape, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.CAME(ps, backend=backend, **kw),
                                       lambda ps: ReferenceCAME(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
def test_came_matches_the_reference_on_triton(shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    kw = CONFIGS[1]
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.CAME(ps, backend="triton", **kw),
                                       lambda ps: ReferenceCAME(ps, **kw), shape, steps=5)
    assert norm_rel(ours, ref) < TOL


def test_factored_states_are_rows_plus_cols():
    assert optforge.CAME.state_bytes((4096, 4096)) == (4096 * 4096 + 2 * (4096 + 4096)) * 4
