"""Lazy sparse staging (runtime/lazy_sparse.py): a rule's kernel over the elements a sparse
gradient holds, on every backend. SparseAdam's numbers against torch are in
tests/catalogue/test_sparse_adam.py; here, the staging itself against plain torch:
coalescing, hybrid (row) gradients, one gather per tensor per step, inputs never written
back, a failing kernel that writes nothing, and rules it cannot run refused by name."""
import pytest
import torch

import optforge
from optforge.dsl import Rule, given, grad, norm, param, state
from optforge.runtime import lazy_sparse


def heavy_ball(lr=0.1, beta=0.5):
    """Momentum whose buffer decays only where a gradient is present."""
    m = beta * state("momentum_buffer") + grad()
    return Rule(param() - lr * m, momentum_buffer=m)


class LazyOptimizer(optforge.Optimizer):
    supports_sparse_grads = True

    def launcher_for(self, compiled, device, dtype):
        return lazy_sparse.wrap(super().launcher_for(compiled, device, dtype), compiled.plan)


def reference_step(p, buf, g, lr=0.1, beta=0.5):
    """Plain torch: coalesce, then update only the present entries."""
    g = g.coalesce()
    index = tuple(g.indices())
    buf[index] = beta * buf[index] + g.values()
    p[index] = p[index] - lr * buf[index]


@pytest.mark.parametrize("hybrid", [False, True], ids=["elements", "rows"])
def test_steps_only_present_entries_after_coalescing(backend, hybrid):
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 5, generator=gen))
    ref, buf = p.detach().clone(), torch.zeros(6, 5)
    opt = LazyOptimizer([p], heavy_ball, backend=backend)
    for _ in range(5):
        if hybrid:  # whole rows, row 2 twice: (sparse_dim 1, dense_dim 1)
            rows = torch.tensor([[2, 0, 2]])
            g = torch.sparse_coo_tensor(rows, torch.randn(3, 5, generator=gen), (6, 5))
        else:
            index = torch.tensor([[0, 3, 0, 5], [1, 4, 1, 0]])  # (0, 1) twice
            g = torch.sparse_coo_tensor(index, torch.randn(4, generator=gen), (6, 5))
        p.grad = g
        opt.step()
        reference_step(ref, buf, g)
    assert torch.allclose(p.detach(), ref, rtol=1e-6, atol=1e-7)
    assert torch.allclose(opt.state[p]["momentum_buffer"], buf, rtol=1e-6, atol=1e-7)


def test_each_tensor_is_gathered_once_per_step(backend, monkeypatch):
    p = torch.nn.Parameter(torch.randn(4, 4))
    opt = LazyOptimizer([p], heavy_ball, backend=backend)
    calls = []
    original = lazy_sparse.LazySparse.gather
    monkeypatch.setattr(lazy_sparse.LazySparse, "gather",
                        lambda self, *a: calls.append(1) or original(self, *a))
    for _ in range(3):
        p.grad = torch.randn(4, 4).to_sparse()
        opt.step()
    assert len(calls) == 3  # in the check phase; the launch reuses it


def test_inputs_are_read_at_the_indices_and_never_written(backend):
    def scaled(lr=0.5):
        return Rule(param() - lr * grad() * given("scale"))
    p = torch.nn.Parameter(torch.zeros(3, 4))
    scale = torch.arange(12.0).reshape(3, 4)
    opt = LazyOptimizer([p], scaled, backend=backend)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1, 2], [3, 0]]), torch.ones(2), (3, 4))
    opt.step(inputs={"scale": {p: scale}})
    want = torch.zeros(3, 4)
    want[1, 3], want[2, 0] = -0.5 * 7, -0.5 * 8
    assert torch.equal(p.detach(), want)
    assert torch.equal(scale, torch.arange(12.0).reshape(3, 4))


def test_a_failing_kernel_scatters_nothing(backend, monkeypatch):
    p = torch.nn.Parameter(torch.randn(4, 4))
    opt = LazyOptimizer([p], heavy_ball, backend=backend)
    p.grad = torch.randn(4, 4).to_sparse()
    opt.step()
    before = (p.detach().clone(), opt.state[p]["momentum_buffer"].clone())
    launcher = opt.launcher_for(opt._compiled(opt.param_groups[0]), p.device, p.dtype)

    def failing(self, params, grads, states, scalars, **kwargs):
        for t in [*params, *states[0]]:
            t.fill_(123.0)  # the gathered copies are written, then the kernel fails
        raise RuntimeError("kernel failed")
    monkeypatch.setattr(type(launcher.inner), "__call__", failing)
    p.grad = torch.randn(4, 4).to_sparse()
    with pytest.raises(RuntimeError, match="kernel failed"):
        opt.step()
    assert torch.equal(p.detach(), before[0])
    assert torch.equal(opt.state[p]["momentum_buffer"], before[1])


def test_rules_with_reductions_are_refused_by_name():
    def normalized(lr=0.1):
        return Rule(param() - lr * grad() / norm(grad()))
    p = torch.nn.Parameter(torch.randn(3))
    opt = LazyOptimizer([p], normalized, backend="torch")
    p.grad = torch.randn(3).to_sparse()
    before = p.detach().clone()
    with pytest.raises(ValueError, match="rule 'normalized' has reductions"):
        opt.step()
    assert not opt.state.get(p) and torch.equal(p.detach(), before)


def test_sparse_adam_refuses_skip_nonfinite():
    with pytest.raises(ValueError, match="skip_nonfinite=True is not supported"):
        optforge.SparseAdam([torch.nn.Parameter(torch.randn(3))], skip_nonfinite=True)
