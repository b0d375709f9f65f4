"""DAdaptAdam matches facebookresearch/dadaptation's DAdaptAdam.step (its first release,
written below in plain torch) over 20 steps on every backend (triton under the
interpreter on CPU machines, fewer steps), with d shared by every tensor of two param
groups; coupled and decoupled weight decay and a finite growth rate. Tolerance: float32
norm-relative 1e-5, as tests/catalogue/test_prodigy.py (d is a ratio of sums over every
tensor, which the reference accumulates in float64 with .item()).
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.catalogue.test_prodigy import _run
from tests.conftest import NATIVE_BACKENDS, norm_rel

TOL = 1e-5
ALL_BACKENDS = NATIVE_BACKENDS + (["triton"] if "triton" in BACKENDS else [])
DEFAULTS = dict(lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=False,
                d0=1e-6, growth_rate=float("inf"))
CONFIGS = [dict(), dict(weight_decay=0.1, decouple=True, growth_rate=2.0),
           dict(lr=0.5, weight_decay=0.05, betas=(0.8, 0.99))]


class ReferenceDAdaptAdam(torch.optim.Optimizer):
    """dadaptation's DAdaptAdam.step (gsq_weighted form, no logging), in plain torch."""

    def __init__(self, params, **kw):
        kw = {**DEFAULTS, **kw}
        super().__init__(params, {**kw, "d": kw["d0"], "k": 0, "gsq_weighted": 0.0})

    @torch.no_grad()
    def step(self):
        group = self.param_groups[0]
        gsq_weighted, d, lr = group["gsq_weighted"], group["d"], group["lr"]
        dlr = d * lr
        beta1, beta2 = group["betas"]
        g_sq = sksq_weighted = sk_l1 = 0.0
        for grp in self.param_groups:
            for p in grp["params"]:
                grad = p.grad
                if grp["weight_decay"] != 0 and not grp["decouple"]:
                    grad.add_(p, alpha=grp["weight_decay"])
                state = self.state[p]
                if not state:
                    state.update(s=torch.zeros_like(p), exp_avg=torch.zeros_like(p),
                                 exp_avg_sq=torch.zeros_like(p))
                state["exp_avg"].mul_(beta1).add_(grad, alpha=dlr * (1 - beta1))
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = state["exp_avg_sq"].sqrt().add_(grp["eps"])
                g_sq += (grad * grad).div_(denom).sum().item()
                state["s"].mul_(beta2).add_(grad, alpha=dlr * (1 - beta2))
                sksq_weighted += (state["s"] * state["s"]).div_(denom).sum().item()
                sk_l1 += state["s"].abs().sum().item()
        gsq_weighted = beta2 * gsq_weighted + g_sq * (dlr**2) * (1 - beta2)
        d_hat = (sksq_weighted / (1 - beta2) - gsq_weighted) / sk_l1
        d = max(d, min(d_hat, d * group["growth_rate"]))
        for grp in self.param_groups:
            grp.update(gsq_weighted=gsq_weighted, d=d)
            for p in grp["params"]:
                state = self.state[p]
                denom = state["exp_avg_sq"].sqrt().add_(grp["eps"])
                if grp["weight_decay"] != 0 and grp["decouple"]:
                    p.add_(p, alpha=-grp["weight_decay"] * dlr)
                p.addcdiv_(state["exp_avg"], denom, value=-1)


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_dadapt_adam_matches_the_reference(kw, backend):
    device = DEVICE if backend == "triton" else "cpu"
    steps = 5 if backend == "triton" else 20
    ours, opt = _run(lambda groups: optforge.DAdaptAdam(groups, backend=backend, **kw), device,
                     steps)
    ref, ref_opt = _run(lambda groups: ReferenceDAdaptAdam(groups, **kw), "cpu", steps)
    for a, b in zip(ours, ref):
        assert norm_rel(a, b) < TOL
    d = ref_opt.param_groups[0]["d"]
    if steps == 20:
        assert d > 10 * DEFAULTS["d0"]  # d has grown: the test exercises its estimate
    for state in opt.state.values():  # one value for every tensor of both groups
        assert abs(float(state["d"]) - d) <= 1e-5 * d
