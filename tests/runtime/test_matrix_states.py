"""Matrix states and every(k): a Shampoo-like rule against a plain-torch reference."""
import copy

import pytest
import torch

import optforge
from optforge.dsl import (Rule, every, grad, inv_root, matmul, matrix_state, param, state,
                          transpose)
from optforge.compiler.printers.torch import torch_source
from optforge.runtime.compiled import compile_rule


def two_sided(lr=0.1, eps=1e-4, interval=3, beta=0.9):
    """L, R accumulate G G^T and G^T G; their inverse 4th roots every `interval` steps."""
    p, g = param(), grad()
    m = beta * state("m") + g
    left = matrix_state("L", ("rows", "rows"), init="identity", scale=eps)
    right = matrix_state("R", ("cols", "cols"), init="identity", scale=eps)
    new_left, new_right = left + matmul(g, transpose(g)), right + matmul(transpose(g), g)
    pl = every(interval, inv_root(new_left, 4), matrix_state("PL", ("rows", "rows")))
    pr = every(interval, inv_root(new_right, 4), matrix_state("PR", ("cols", "cols")))
    return Rule(p - lr * matmul(matmul(pl, m), pr), m=m, L=new_left, R=new_right, PL=pl, PR=pr)


def _reference(w, grads, lr=0.1, eps=1e-4, interval=3, beta=0.9):
    # factors are float32 states, as in the optimizer: with eps = 1e-4 next to entries of
    # order 10 their small eigenvalues carry float32 rounding that the -1/4 power amplifies,
    # so the reference accumulates in float32 too (roots in float64, as the kernel does)
    rows, cols = w.shape[0], w.numel() // w.shape[0]
    w2 = w.reshape(rows, cols)
    left, right = eps * torch.eye(rows), eps * torch.eye(cols)
    pl, pr, m = torch.eye(rows), torch.eye(cols), torch.zeros_like(w2)

    def root(a):
        a = (a + a.T).double() / 2
        vals, vecs = torch.linalg.eigh(a)
        return ((vecs * vals.clamp(min=0).pow(-0.25)) @ vecs.T).float()

    for t, g in enumerate(grads, 1):
        g = g.reshape(rows, cols)
        m = beta * m + g
        left, right = left + g @ g.T, right + g.T @ g
        if (t - 1) % interval == 0:
            pl, pr = root(left), root(right)
        w2 = w2 - lr * pl @ m @ pr
    return w2.reshape(w.shape)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (4, 2, 3, 3)], ids=str)
def test_matches_plain_torch_on_every_backend(backend, shape):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(shape))
    start = w.detach().clone()
    grads = [torch.randn(shape) for _ in range(8)]
    opt = optforge.Optimizer([w], two_sided, backend=backend)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    expected = _reference(start, grads)
    assert (w.detach() - expected).norm() / expected.norm() < 1e-5
    rows = shape[0]
    assert opt.state[w]["L"].shape == (rows, rows)
    assert opt.state[w]["PR"].shape == (w.numel() // rows,) * 2


def test_every_skips_the_work_between_updates(monkeypatch):
    calls = []
    from optforge.kernels import matrix as mx
    real = mx.inv_root
    monkeypatch.setattr(mx, "inv_root", lambda *a: calls.append(1) or real(*a))
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = optforge.Optimizer([w], two_sided, backend="torch", interval=3)
    for _ in range(7):  # steps 1, 4, 7 recompute both roots
        w.grad = torch.randn(4, 3)
        opt.step()
    assert len(calls) == 6


@pytest.mark.parametrize("interval", [0, 2.5, float("nan")])
def test_a_bad_interval_is_a_clear_error_and_changes_nothing(backend, interval):
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = optforge.Optimizer([w], two_sided, backend=backend)
    w.grad = torch.randn(4, 3)
    opt.step()
    before = copy.deepcopy(opt.state_dict()), w.detach().clone()
    opt.param_groups[0]["interval"] = interval
    with pytest.raises(ValueError, match=r"every\(k, \.\.\.\): the update interval k = "
                                         r"(0|2\.5|nan) must be a whole number >= 1"):
        opt.step()
    assert torch.equal(w.detach(), before[1])
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(value, before[0]["state"][0][key]), key


def test_checkpoint_resumes_exactly():
    torch.manual_seed(1)
    grads = [torch.randn(5, 3) for _ in range(8)]
    w = torch.nn.Parameter(torch.randn(5, 3))
    v = torch.nn.Parameter(w.detach().clone())
    a = optforge.Optimizer([w], two_sided)
    for g in grads[:4]:
        w.grad = g.clone()
        a.step()
    saved = copy.deepcopy(a.state_dict())
    assert saved["state"][0]["L"].shape == (5, 5)
    b = optforge.Optimizer([v], two_sided)
    b.load_state_dict(saved)
    with torch.no_grad():
        v.copy_(w)
    for g in grads[4:]:
        w.grad, v.grad = g.clone(), g.clone()
        a.step()
        b.step()
    torch.testing.assert_close(v.detach(), w.detach(), rtol=0, atol=0)
    bad = copy.deepcopy(saved)
    bad["state"][0]["L"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"state 'L' has shape torch.Size\(\[3, 3\]\), but "
                                         r"\(5, 5\) is expected"):
        optforge.Optimizer([v], two_sided).load_state_dict(bad)


def test_generated_matrix_stage_is_lazy_and_shared():
    from optforge.dsl.spec import RuleSpec
    spec = RuleSpec(two_sided)
    source = torch_source(compile_rule(spec, spec.default_variant).plan)
    stage = source[source.index("def matrix_0"):source.index("MATRIX_STAGES")]
    assert stage.count("_mx.inv_root(") == 2 and stage.count("if _mx.due(") == 2
    assert stage.count("_mx.transpose(v_g)") == 1  # shared by both factors
