"""runtime/backends.py: the choice among the declared backends reads their capabilities.

Fake backends (declared with kernels.protocol, built on the torch launcher) stand in for
a new backend: "auto" ranks them, and a rule needing a capability one lacks is refused by
name when it was asked for, or run on the torch reference under "auto".
"""
import pytest
import torch

import optforge
from optforge.dsl import Rule, grad, mean, param
from optforge.kernels.protocol import Backend, Capabilities, declared_support
from optforge.kernels.registry import BACKENDS, register
from optforge.kernels.torch_backend import TORCH
from optforge.runtime.backends import BackendError, auto_order, select


def row_centred(lr=0.1):
    g = grad()
    return Rule(param() - lr * (g - mean(g, over="row")))


def _fake(name, rank=30, **flags):
    caps = Capabilities(devices=("cpu",), **flags)
    return Backend(name, declared_support(caps), TORCH.build, TORCH.source, caps,
                   auto_devices=("cpu",), auto_rank=rank)


def _bucket_launcher(opt, p):
    compiled = opt._compiled(opt.param_groups[0])
    return compiled, opt.launcher_for(compiled, p.device, p.dtype).inner


def _param():
    p = torch.nn.Parameter(torch.arange(12.0).reshape(3, 4))
    p.grad = torch.linspace(-1, 1, 12).reshape(3, 4)
    return p


@pytest.mark.filterwarnings("ignore:optforge. no compiled backend")
def test_auto_tries_backends_by_rank_with_torch_last(monkeypatch):
    assert auto_order() == ["triton", "numba", "torch"]
    monkeypatch.setitem(BACKENDS, "fake_ranked", _fake("fake_ranked", rank=30))
    assert auto_order()[0] == "fake_ranked" and auto_order()[-1] == "torch"
    assert select("auto", torch.device("cpu"), torch.float32).name == "fake_ranked"
    assert select("auto", torch.device("meta"), torch.float32).name == "torch"


def test_a_missing_row_scope_is_refused_by_name(monkeypatch):
    monkeypatch.setitem(BACKENDS, "fake_rowless",
                        _fake("fake_rowless", reduce_stages=True, row_col_scopes=False))
    p = _param()
    opt = optforge.Optimizer([p], row_centred, backend="fake_rowless")
    with pytest.raises(BackendError, match="backend 'fake_rowless' cannot run rule "
                                           "'row_centred': it cannot reduce over rows"):
        opt.step()
    assert torch.equal(p.detach(), torch.arange(12.0).reshape(3, 4)) and not opt.state.get(p)


def test_auto_runs_what_the_backend_cannot_on_torch(monkeypatch):
    rowless = _fake("fake_rowless_auto", reduce_stages=True, row_col_scopes=False)
    monkeypatch.setitem(BACKENDS, rowless.name, rowless)
    p, ref = _param(), _param()
    opt = optforge.Optimizer([p], row_centred)
    compiled, launcher = _bucket_launcher(opt, p)
    assert launcher is compiled.launcher(BACKENDS["torch"])
    opt.step()
    optforge.Optimizer([ref], row_centred, backend="torch").step()
    assert torch.equal(p.detach(), ref.detach())
    # a rule within its capabilities runs on it
    q = _param()
    sgd = optforge.SGD([q], lr=0.1)
    compiled, launcher = _bucket_launcher(sgd, q)
    assert launcher is compiled.launcher(rowless)


def test_register_refuses_taken_and_reserved_names(monkeypatch):
    monkeypatch.setattr("optforge.kernels.registry.BACKENDS", dict(BACKENDS))
    from optforge.kernels import registry
    fresh = _fake("fake_registered")
    assert register(fresh) is fresh and registry.BACKENDS["fake_registered"] is fresh
    with pytest.raises(ValueError, match="'fake_registered' is already registered"):
        register(_fake("fake_registered"))
    with pytest.raises(ValueError, match="'auto'"):
        register(_fake("auto"))
    with pytest.raises(TypeError, match="Backend"):
        register("numba")


def test_a_missing_stochastic_rounding_is_refused_by_name_or_run_on_torch(monkeypatch):
    """A plan whose stores the storage options mark stochastic needs the capability."""
    exact = _fake("fake_exact", reduce_stages=True, row_col_scopes=True)
    monkeypatch.setitem(BACKENDS, exact.name, exact)
    p = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
    p.grad = torch.full((64,), -1.0, dtype=torch.bfloat16)
    opt = optforge.SGD([p], lr=2.0**-10, backend="fake_exact", param_rounding="stochastic")
    with pytest.raises(BackendError, match="backend 'fake_exact' cannot run rule 'SGD': it "
                                           "cannot round stores stochastically"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(64, dtype=torch.bfloat16)) and not opt.state.get(p)
    # under "auto" the same group runs on torch; without the option, on the fake backend
    auto = optforge.SGD([p], lr=2.0**-10, param_rounding="stochastic")
    compiled, launcher = _bucket_launcher(auto, p)
    assert launcher is compiled.launcher(BACKENDS["torch"])
    plain = optforge.SGD([p], lr=2.0**-10)
    compiled, launcher = _bucket_launcher(plain, p)
    assert launcher is compiled.launcher(exact)
