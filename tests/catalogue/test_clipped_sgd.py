"""ClippedSGD vs torch itself: torch.nn.utils.clip_grad_norm_(params, max_norm) followed by
torch.optim.SGD (foreach=False), on one tensor (the SHAPES) and on a multi-tensor group,
with gradients whose global norm is alternately above and below max_norm (so both sides
of min(1, max_norm / (||g|| + 1e-6)) run). No convention difference is intended: torch's
clip coefficient is max_norm / (total_norm + 1e-6) clamped to 1, applied before SGD's
weight decay and maximize.
"""
import pytest
import torch

from optforge.catalogue.clipped_sgd import ClippedSGD
from tests.catalogue.group_side_by_side import group_rel, run_group_side_by_side
from tests.conftest import SHAPES, norm_rel, run_side_by_side


class TorchClipThenSGD:
    def __init__(self, params, max_norm=1.0, **sgd_kw):
        self.params, self.max_norm = list(params), max_norm
        self.sgd = torch.optim.SGD(self.params, foreach=False, **sgd_kw)
        self.norms = []  # the global norm before clipping, per step

    def step(self):
        self.norms.append(float(torch.nn.utils.clip_grad_norm_(self.params, self.max_norm,
                                                               foreach=False)))
        self.sgd.step()


CASES = {"plain": dict(lr=0.1),
         "momentum": dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
         "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
         "maximize": dict(lr=0.05, momentum=0.5, weight_decay=0.01, maximize=True)}


def _alternating(k):
    return 10.0 if k % 2 else 0.01


@pytest.mark.parametrize("case", ["plain", "momentum"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_single_tensor_matches_torch(shape, case, backend):
    kw = dict(CASES[case], max_norm=0.5 * torch.Size(shape).numel() ** 0.5)
    ref = {}

    def make_ref(ps):
        ref["opt"] = TorchClipThenSGD(ps, **kw)
        return ref["opt"]

    def grad_fn(p, k):  # global norm ~ 10 sqrt(n), then ~ 0.01 sqrt(n): clipped, then not
        return _alternating(k) * torch.randn(p.shape, generator=torch.Generator().manual_seed(k))

    ours, theirs, _, _ = run_side_by_side(lambda ps: ClippedSGD(ps, backend=backend, **kw),
                                          make_ref, shape, grad_fn=grad_fn)
    assert norm_rel(ours, theirs) < 1e-6
    norms = ref["opt"].norms
    assert any(n > kw["max_norm"] for n in norms) and any(n < kw["max_norm"] for n in norms)


@pytest.mark.parametrize("case", CASES)
def test_group_matches_torch(case, backend):
    kw = dict(CASES[case], max_norm=20.0)
    ref = {}

    def make_ref(ps):
        ref["opt"] = TorchClipThenSGD(ps, **kw)
        return ref["opt"]

    ours, theirs = run_group_side_by_side(lambda ps: ClippedSGD(ps, backend=backend, **kw),
                                          make_ref, grad_scale=lambda k: 0.03 if k % 2 else 1.0)
    for p, q in zip(ours, theirs):
        assert norm_rel(p, q) < 1e-6
    assert group_rel(ours, theirs) < 1e-6
    norms = ref["opt"].norms
    assert any(n > 20.0 for n in norms) and any(n < 20.0 for n in norms)


def test_state_keys_match_torch_sgd():
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.ones(4)
    opt = ClippedSGD([p], lr=0.1, momentum=0.9)
    opt.step()
    assert set(opt.state[p]) == {"step", "momentum_buffer"}
    assert torch.allclose(opt.state[p]["momentum_buffer"], torch.full((4,), 0.5), atol=1e-6)
