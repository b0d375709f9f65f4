"""SM3 matches pytorch-optimizer's dense SM3 (its equations written below in plain torch)
over 20 steps on every backend (triton under the interpreter on CPU machines, fewer
steps): matrices (row and column accumulators), vectors and scalars, with beta and
momentum. Tolerance: float32 norm-relative 1e-6.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.conftest import SHAPES, norm_rel, run_side_by_side

TOL = 1e-6
CONFIGS = [dict(), dict(lr=3e-2, momentum=0.9, beta=0.5, eps=1e-8)]


class ReferenceSM3(torch.optim.Optimizer):
    """pytorch-optimizer's SM3.step for dense gradients, one accumulator per dimension."""

    def __init__(self, params, lr=1e-1, momentum=0.0, beta=0.0, eps=1e-30):
        super().__init__(params, dict(lr=lr, momentum=momentum, beta=beta, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                self._step(p, p.grad, group, self.state[p])

    @staticmethod
    def _max_except(x, dim):
        for d in range(x.dim()):
            if d != dim:
                x = x.amax(dim=d, keepdim=True)
        return x

    def _step(self, p, grad, group, state):
        rank, beta, momentum = grad.dim(), group["beta"], group["momentum"]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
            if rank == 0:
                state["acc_0"] = torch.zeros_like(p)
            for i in range(rank):
                state[f"acc_{i}"] = torch.zeros([1] * i + [grad.shape[i]] + [1] * (rank - 1 - i))
        update = state["acc_0"].clone()
        for i in range(1, rank):
            update = torch.min(update, state[f"acc_{i}"])
        if beta > 0.0:
            update.mul_(beta)
        update.addcmul_(grad, grad, value=1.0 - beta)
        for i in range(rank):
            acc = state[f"acc_{i}"]
            nu_max = self._max_except(update, i)
            if beta > 0.0:
                torch.max(acc, nu_max, out=acc)
            else:
                acc.copy_(nu_max)
        update.add_(group["eps"]).rsqrt_().mul_(grad)
        if momentum > 0.0:
            m = state["momentum_buffer"]
            m.mul_(momentum).add_(update, alpha=1.0 - momentum)
            update = m
        p.add_(update, alpha=-group["lr"])


def _name(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


# (no 0-d parameter: the reference's loop over dimensions is empty for one, so its
# accumulator never grows; optforge's is the paper's, Adagrad's, tested below)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=_name)
def test_sm3_matches_the_reference(kw, shape, backend):
    ours, ref, o1, o2 = run_side_by_side(lambda ps: optforge.SM3(ps, backend=backend, **kw),
                                         lambda ps: ReferenceSM3(ps, **kw), shape)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    if len(shape) == 2:
        assert norm_rel(s1["accumulator_0"], s2["acc_0"]) < TOL
        assert norm_rel(s1["accumulator_1"], s2["acc_1"]) < TOL


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
def test_sm3_matches_the_reference_on_triton(shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    kw = CONFIGS[1]
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.SM3(ps, backend="triton", **kw),
                                       lambda ps: ReferenceSM3(ps, **kw), shape, steps=6)
    assert norm_rel(ours, ref) < TOL


def test_a_scalar_accumulates_as_adagrad(backend):
    p = torch.nn.Parameter(torch.tensor(1.0))
    opt = optforge.SM3([p], lr=0.1, eps=0.0, backend=backend)
    acc, expected = 0.0, 1.0
    for g in (0.5, -2.0, 1.5):
        p.grad = torch.tensor(g)
        opt.step()
        acc += g * g
        expected -= 0.1 * g / acc ** 0.5
    assert abs(float(p) - expected) < 1e-6 and abs(float(opt.state[p]["accumulator_0"]) - acc) < 1e-6


def test_state_is_rows_plus_cols_without_momentum():
    p = torch.nn.Parameter(torch.zeros(512, 256))
    opt = optforge.SM3([p], backend="torch")
    p.grad = torch.ones_like(p)
    opt.step()
    stored = sum(v.untyped_storage().nbytes() for k, v in opt.state[p].items() if k != "step")
    assert stored == (512 + 256) * 4
    assert optforge.SM3.state_bytes((512, 256)) == (512 + 256) * 4


def test_more_than_two_dimensions_is_refused():
    p = torch.nn.Parameter(torch.randn(2, 3, 4))
    p.grad = torch.randn_like(p)
    with pytest.raises(ValueError, match=r"SM3: parameter 0 of group 0 has shape \(2, 3, 4\)"):
        optforge.SM3([p], backend="torch").step()
