"""Multi-stage rules: reductions over a tensor, its rows or columns, or the whole group.

Each rule is checked against a plain-torch implementation of the same formula
written here, over several steps on the awkward shapes, on every backend (the
``backend`` fixture: torch and numba here; triton too when TRITON_INTERPRET=1 is set).
"""
import pytest
import torch

import optforge
from optforge.compiler import lower, traffic
from optforge.dsl import (Rule, RuleSpec, amax, count, dot, grad, mean, ndim, norm, numel, param,
                          sqrt, state, step, where)
from optforge.dsl import abs as abs_
from optforge.dsl import maximum as dsl_max
from optforge.dsl import sum as dsl_sum
from optforge.runtime.backends import BACKENDS, Backend, BackendError
from tests.conftest import SHAPES, norm_rel, run_side_by_side


def lamb_like(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
    p, g, t = param(), grad(), step()
    b1, b2 = betas
    m = b1 * state("exp_avg") + (1 - b1) * g
    v = b2 * state("exp_avg_sq") + (1 - b2) * g * g
    u = (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps) + weight_decay * p
    ratio = where((norm(p) > 0) & (norm(u) > 0), norm(p) / norm(u), 1)
    return Rule(p - lr * ratio * u, exp_avg=m, exp_avg_sq=v)


class RefLamb(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["t"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                u = (st["m"] / (1 - b1 ** st["t"])) / (
                    (st["v"] / (1 - b2 ** st["t"])).sqrt() + group["eps"])
                u = u + group["weight_decay"] * p
                pn, un = p.norm(), u.norm()
                ratio = pn / un if pn > 0 and un > 0 else 1.0
                p.add_(u, alpha=-group["lr"] * float(ratio))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_per_tensor_trust_ratio_matches_reference(shape, backend):
    ours, ref, _, _ = run_side_by_side(
        lambda ps: optforge.Optimizer(ps, lamb_like, backend=backend),
        lambda ps: RefLamb(ps), shape)
    assert norm_rel(ours, ref) < 1e-6


def _rows(x):
    return x.reshape(x.shape[0] if x.dim() else 1, -1)


@pytest.mark.parametrize("shape", SHAPES + [(4, 3, 5)], ids=str)
def test_row_and_column_scopes_match_reference(shape, backend):
    def rule(lr=0.1):
        g = grad()
        row_mean, col_max = mean(g, over="row"), amax(g, over="col")
        return Rule(param() - lr * (g - row_mean) / (abs_(col_max) + 1) * numel(over="row"))

    def ref_grad_step(p, g, lr=0.1):
        rows = _rows(g)
        row_mean = rows.mean(1, keepdim=True)
        col_max = rows.amax(0, keepdim=True)
        upd = (rows - row_mean) / (col_max.abs() + 1) * rows.shape[1]
        return p - lr * upd.reshape(p.shape)

    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen))
    expected = p.detach().clone()
    opt = optforge.Optimizer([p], rule, backend=backend)
    for _ in range(5):
        g = torch.randn(shape, generator=gen)
        p.grad = g
        expected = ref_grad_step(expected, g)
        opt.step()
    assert norm_rel(p.detach(), expected) < 1e-6


def test_group_scope_is_global_norm_clipping(backend):
    def clipped_sgd(lr=0.1, max_norm=1.0):
        g = grad()
        total_norm = norm(g, over="group")
        scale = where(total_norm > max_norm, max_norm / (total_norm + 1e-6), 1)
        return Rule(param() - lr * scale * g)

    gen = torch.Generator().manual_seed(1)
    shapes = [(7, 13), (1,), (257, 129), (1023,)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = optforge.Optimizer(ours, clipped_sgd, lr=0.1, max_norm=1.0, backend=backend)
    ref_opt = torch.optim.SGD(ref, lr=0.1, foreach=False)
    for _ in range(5):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref, 1.0, foreach=False)
        ref_opt.step()
    for p, q in zip(ours, ref):
        assert norm_rel(p.detach(), q.detach()) < 1e-6


def test_norm_orders_sum_count_and_numel(backend):
    def rule(lr=1.0):
        g = grad()
        value = (norm(g, 1) + norm(g, float("inf")) + dsl_sum(g) + count(g > 0)
                 + numel() + norm(g))
        return Rule(param() - lr * value)
    g = torch.tensor([3.0, -4.0, 0.5, 0.0])
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = g
    optforge.Optimizer([p], rule, backend=backend).step()
    expected = g.abs().sum() + g.abs().max() + g.sum() + (g > 0).sum() + 4 + g.norm()
    assert torch.allclose(p.detach(), torch.full((4,), -float(expected)))


def test_reductions_are_deterministic(backend):
    def run():
        gen = torch.Generator().manual_seed(3)
        p = torch.nn.Parameter(torch.randn(257, 129, generator=gen))
        opt = optforge.Optimizer([p], lamb_like, backend=backend)
        for _ in range(3):
            p.grad = torch.randn(257, 129, generator=gen)
            opt.step()
        return p.detach().clone()
    assert torch.equal(run(), run())


def test_traffic_counts_the_reduce_pass():
    spec = RuleSpec(lamb_like)
    plan = lower(spec.build(), spec.hyper_symbols)
    assert len(plan.reduce_stages) == 1 and len(plan.reductions) == 2
    assert [r.name for r in plan.reduce_stages[0].loads] == ["p", "g", "exp_avg", "exp_avg_sq"]
    assert traffic(plan).read == 16 + 16 and traffic(plan).written == 12


def test_a_backend_without_a_reduce_stage_is_refused_or_skipped(monkeypatch):
    class NoReduce:
        def __init__(self, plan):
            pass

        def __call__(self, *args, **kwargs):
            raise AssertionError("must not run")

    fake = Backend("fake", lambda device, dtype: True, NoReduce, lambda plan: "")
    monkeypatch.setitem(BACKENDS, "fake", fake)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(BackendError, match="backend 'fake' cannot run rule 'lamb_like': it "
                                           "has no reduce stage"):
        optforge.Optimizer([p], lamb_like, backend="fake").step()


def test_nested_reductions_run_as_successive_stages(backend):
    """Regret matching+: Q <- max(Q + <g, x> - g, 0); x <- Q / sum(Q) needs <g, x> first."""
    def rm_plus(lr=1.0):
        x, g = param(), grad()
        q = dsl_max(state("regret") + dot(g, x) - g, 0)
        s = dsl_sum(q)
        return Rule(where(s > 0, q / s, 1 / numel()), regret=q)

    spec = RuleSpec(rm_plus)
    plan = lower(spec.build(), spec.hyper_symbols)
    assert len(plan.reduce_stages) == 2
    x = torch.nn.Parameter(torch.full((3,), 1 / 3))
    opt = optforge.Optimizer([x], rm_plus, backend=backend)
    regret, ref = torch.zeros(3), x.detach().clone()
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        g = torch.randn(3, generator=gen)
        x.grad = g
        opt.step()
        regret = (regret + (g * ref).sum() - g).clamp(min=0)
        ref = regret / regret.sum() if regret.sum() > 0 else torch.full((3,), 1 / 3)
        assert torch.allclose(x.detach(), ref, atol=1e-6)
        assert torch.allclose(opt.state[x]["regret"], regret, atol=1e-6)


@pytest.mark.parametrize("shape,expected", [((), 0), ((5,), 1), ((5, 1), 2), ((2, 3, 4), 3)])
def test_ndim_distinguishes_shapes_that_views_cannot(shape, expected, backend):
    from optforge.dsl import ndim

    def rule(lr=1.0):
        return Rule(param() - lr * ndim() + 0 * grad())
    p = torch.nn.Parameter(torch.zeros(shape))
    p.grad = torch.zeros(shape)
    optforge.Optimizer([p], rule, backend=backend).step()
    assert torch.equal(p.detach(), torch.full(shape, -float(expected)))


def shape_scaled(lr=0.1):
    """Counts only: every scope of numel, and ndim (no data is reduced)."""
    p, g = param(), grad()
    scale = numel("row") / numel("col") + numel() / numel("group") + ndim()
    return Rule(p - lr * scale * g)


def test_shape_only_stages_run_on_the_host_with_the_kernels_values(backend, monkeypatch):
    """A stage of numel/ndim alone launches no reduce kernel (no pass over memory) and
    gives the values the kernels give."""
    shapes = [(7, 13), (1,), (3, 4, 5), (257, 129)]
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    group = sum(p.numel() for p in ps)
    want = [p.detach() - 0.1 * ((p.numel() // p.shape[0]) / p.shape[0] + p.numel() / group
                                + p.dim()) for p in ps]
    real = optforge.Optimizer.launcher_for
    monkeypatch.setattr(optforge.Optimizer, "launcher_for",
                        lambda self, *a: _NoReduce(real(self, *a)))
    opt = optforge.Optimizer(ps, shape_scaled, backend=backend)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    for p, w in zip(ps, want):
        assert norm_rel(p.detach(), w) < 1e-6, tuple(p.shape)


class _NoReduce:
    def __init__(self, inner):
        self.inner = inner

    def check(self, *a, **k):
        return self.inner.check(*a, **k)

    def reduce(self, *a, **k):
        raise AssertionError("a shape-only stage launched a reduce kernel")

    def __call__(self, *a, **k):
        return self.inner(*a, **k)
