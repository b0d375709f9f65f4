"""SparseAdam vs torch.optim.SparseAdam: 20 steps on every backend (triton under the
interpreter on CPU machines), sparse embeddings with repeated indices, awkward shapes,
untouched elements left bit-identical, and torch checkpoints in both directions.

Tolerance 1e-6 norm-relative, as the catalogue's other comparisons with torch.optim.
"""
import io

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.conftest import NATIVE_BACKENDS, norm_rel

TOL = 1e-6
STEPS = 20
ALL_BACKENDS = NATIVE_BACKENDS + (["triton"] if "triton" in BACKENDS else [])


class Model(torch.nn.Module):
    """Two sparse embeddings (one 1 wide) and a free-standing tensor whose gradient is
    made sparse by hand (every dim sparse), on ``device``."""

    def __init__(self, device="cpu"):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.wide = torch.nn.Embedding(13, 7, sparse=True).to(device)
        self.narrow = torch.nn.Embedding(5, 1, sparse=True).to(device)
        self.block = torch.nn.Parameter(torch.randn(3, 4, 5, generator=gen).to(device))
        with torch.no_grad():
            self.wide.weight.copy_(torch.randn(13, 7, generator=gen))
            self.narrow.weight.copy_(torch.randn(5, 1, generator=gen))

    def backward(self, k: int):
        """A loss on a batch with repeated indices, and a sparse gradient for ``block``."""
        gen = torch.Generator().manual_seed(100 + k)
        device = self.block.device
        rows = torch.randint(0, 13, (9,), generator=gen).to(device)
        rows[1] = rows[0]  # a repeated index in every batch: coalesced (summed) first
        few = torch.randint(0, 5, (2,), generator=gen).to(device)
        target = torch.randn(9, 7, generator=gen).to(device)
        loss = ((self.wide(rows) - target) ** 2).sum() + (self.narrow(few) ** 3).sum()
        loss.backward()
        mask = (torch.rand(3, 4, 5, generator=gen) < 0.3).to(device)
        dense = (torch.randn(3, 4, 5, generator=gen).to(device) + self.block.detach()) * mask
        self.block.grad = dense.to_sparse()


def run(opt, model, steps, first=0):
    for k in range(first, first + steps):
        opt.zero_grad()
        model.backward(k)
        opt.step()


def assert_close(ours_opt, ours, ref_opt, ref):
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert norm_rel(a.detach().cpu(), b.detach()) < TOL
        for key in ("exp_avg", "exp_avg_sq"):
            assert norm_rel(ours_opt.state[a][key].cpu(), ref_opt.state[b][key]) < TOL, key
        assert float(ours_opt.state[a]["step"]) == float(ref_opt.state[b]["step"])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("kw", [dict(lr=0.05), dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6,
                                                    maximize=True)], ids=["default", "options"])
def test_matches_torch_sparse_adam(backend, kw):
    device = DEVICE if backend == "triton" else "cpu"
    ours, ref = Model(device), Model()
    ours_opt = optforge.SparseAdam(ours.parameters(), backend=backend, **kw)
    ref_opt = torch.optim.SparseAdam(ref.parameters(), **kw)
    run(ours_opt, ours, STEPS)
    run(ref_opt, ref, STEPS)
    assert_close(ours_opt, ours, ref_opt, ref)


def test_absent_elements_are_untouched(backend):
    """Rows a step's gradient does not hold keep their parameter and moments bit for bit
    (a dense Adam would decay the moments and move them)."""
    emb = torch.nn.Embedding(6, 4, sparse=True)
    opt = optforge.SparseAdam(emb.parameters(), lr=0.1, backend=backend)
    emb(torch.tensor([0, 1, 2, 3, 4, 5])).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[emb.weight].items()}
    weight = emb.weight.detach().clone()
    opt.zero_grad()
    emb(torch.tensor([4, 1, 4])).pow(2).sum().backward()
    opt.step()
    untouched = [0, 2, 3, 5]
    assert torch.equal(emb.weight.detach()[untouched], weight[untouched])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[emb.weight][key][untouched], before[key][untouched])
        assert not torch.equal(opt.state[emb.weight][key][[1, 4]], before[key][[1, 4]])
    assert float(opt.state[emb.weight]["step"]) == 2


def test_non_contiguous_parameter_and_empty_gradient(backend):
    """A transposed weight is gathered and scattered through its strides; a gradient that
    holds nothing leaves the parameter and its moments alone (its step still counts)."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(5, 8, generator=gen)
    ours = torch.nn.Parameter(base.clone().t())  # (8, 5), not contiguous
    ref = torch.nn.Parameter(base.clone().t())
    o1 = optforge.SparseAdam([ours], lr=0.1, backend=backend)
    o2 = torch.optim.SparseAdam([ref], lr=0.1)
    for k in range(STEPS):
        g = torch.randn(8, 5, generator=gen) * (torch.rand(8, 5, generator=gen) < 0.4)
        if k == 5:
            g = torch.zeros(8, 5)  # to_sparse(): no values at all
        ours.grad, ref.grad = g.to_sparse(), g.to_sparse()
        o1.step()
        o2.step()
    assert norm_rel(ours.detach(), ref.detach()) < TOL
    assert float(o1.state[ours]["step"]) == float(o2.state[ref]["step"]) == STEPS


def test_dense_gradient_is_refused_with_torch_message(backend):
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = optforge.SparseAdam([p], backend=backend)
    p.grad = torch.randn(4, 3).to_sparse()
    opt.step()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    value = p.detach().clone()
    p.grad = torch.randn(4, 3)
    ref = torch.optim.SparseAdam([torch.nn.Parameter(torch.randn(4, 3))])
    ref.param_groups[0]["params"][0].grad = torch.randn(4, 3)
    with pytest.raises(RuntimeError) as theirs:
        ref.step()
    with pytest.raises(RuntimeError, match=str(theirs.value)):
        opt.step()
    assert torch.equal(p.detach(), value)
    assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())


def test_sparse_and_complex_parameters_are_refused():
    with pytest.raises(ValueError, match=r"Complex params at indices \[\[0, 0\]\]"):
        optforge.SparseAdam([torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))])
    with pytest.raises(ValueError, match="SparseAdam requires dense parameter tensors"):
        optforge.SparseAdam([torch.randn(3, 3).to_sparse()])


def _through_disk(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_torch_checkpoint_continues_in_optforge(backend):
    ref = Model()
    ref_opt = torch.optim.SparseAdam(ref.parameters(), lr=0.03, betas=(0.8, 0.99))
    run(ref_opt, ref, 3)
    ours = Model()
    ours.load_state_dict(ref.state_dict())
    ours_opt = optforge.SparseAdam(ours.parameters(), backend=backend)
    ours_opt.load_state_dict(_through_disk(ref_opt.state_dict()))  # its int steps too
    assert ours_opt.param_groups[0]["lr"] == 0.03
    run(ref_opt, ref, 3, first=3)
    run(ours_opt, ours, 3, first=3)
    assert_close(ours_opt, ours, ref_opt, ref)


def test_optforge_checkpoint_continues_in_torch(backend):
    ours = Model()
    ours_opt = optforge.SparseAdam(ours.parameters(), lr=0.03, backend=backend)
    run(ours_opt, ours, 3)
    ref = Model()
    ref.load_state_dict(ours.state_dict())
    ref_opt = torch.optim.SparseAdam(ref.parameters())
    ref_opt.load_state_dict(_through_disk(ours_opt.state_dict()))
    run(ours_opt, ours, 3, first=3)
    run(ref_opt, ref, 3, first=3)
    assert_close(ours_opt, ours, ref_opt, ref)
