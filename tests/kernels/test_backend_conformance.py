"""Every registered backend keeps the contract of kernels/protocol.py (kernels/README.md).

Parametrized over ``kernels.registry.BACKENDS``, so a new backend is tested by being
registered. Each backend runs on the first device of ("cpu", "cuda") it supports here
(triton: the CPU under TRITON_INTERPRET=1, which tests/triton_env.py sets, or a CUDA GPU).
Checked: its declared capabilities against what it does (devices and dtypes, strided
tensors, tensor subclasses, stochastic rounding, row/column reductions, matrix stages),
an elementwise, a reduction and a matrix rule against torch.optim or plain torch
(so the torch backend is held to the same reference), a refused
bucket leaving every parameter and state as it was, and the generated source.
"""
import math

import pytest
import torch

from tests.triton_env import INTERPRETED  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.dsl import Rule, amax, grad, mean, norm, orthogonalize, param, state
from optforge.dsl import abs as abs_
from optforge.kernels.protocol import FLOAT_DTYPES, Launcher, MatrixLauncher
from optforge.kernels.raw_memory import UnsupportedTensorError
from optforge.kernels.registry import BACKENDS
from optforge.runtime.backends import BackendError
from optforge.runtime.compiled import compile_rule
from tests.conftest import norm_rel

F32_TOL = 1e-6  # norm-relative, as the torch parity tests: fused float32 math, ~10 ulps
STEPS = 4


def _device(name: str) -> torch.device | None:
    """Where this backend runs in this process (None: nowhere here)."""
    for kind in ("cpu", "cuda"):
        device = torch.device(kind)
        if BACKENDS[name].supports(device, torch.float32):
            return device
    return None


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    """(name, Backend, device) of every registered backend that can run here."""
    device = _device(request.param)
    if device is None:
        pytest.skip(f"backend {request.param!r} runs nowhere in this process")
    return request.param, BACKENDS[request.param], device


def row_and_tensor_norms(lr=0.05, beta=0.9):
    """A two-scope reduction rule: a trust ratio over the tensor and a row-centred update."""
    p, g = param(), grad()
    m1 = beta * state("m") + (1 - beta) * g
    centred = m1 - mean(m1, over="row")
    update = centred / (abs_(amax(centred, over="row")) + 1)
    trust = norm(p) / (norm(update) + 1)
    return Rule(p - lr * trust * update, m=m1)


def tensor_norm_only(lr=0.05):
    """Normalized gradient descent: one reduction over the whole tensor."""
    p, g = param(), grad()
    return Rule(p - lr * g / (norm(g) + 1e-8))


def orthogonal_momentum(lr=0.02, beta=0.9):
    """A matrix rule without reductions (Muon's core): orthogonalized momentum, kept under
    torch.optim.Muon's state name."""
    m1 = beta * state("momentum_buffer") + (1 - beta) * grad()
    return Rule(param() - lr * orthogonalize(m1), momentum_buffer=m1)


def _run(make, shapes, device, steps=STEPS, dtype=torch.float32, seed=0):
    """The same seeded gradients through ``make(params)``; returns (params, optimizer)."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype).to(device))
              for s in shapes]
    opt = make(params)
    for _ in range(steps):
        for p in params:
            p.grad = (torch.randn(p.shape, generator=gen) + 0.5 * p.detach().float().cpu()
                      ).to(dtype).to(device)
        opt.step()
    return params, opt


class Reference(torch.optim.Optimizer):
    """Plain torch, written from the rule: ``fn(p, g, state)`` -> the new p, per parameter
    (the independent reference every backend, the torch backend included, must match)."""

    def __init__(self, params, fn):
        super().__init__(params, {})
        self.fn = fn

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(self.fn(p.detach().clone(), p.grad, self.state[p]))


def reference_tensor_norm(p, g, state, lr=0.05):
    return p - lr * g / (g.norm() + 1e-8)


def reference_row_and_tensor(p, g, state, lr=0.05, beta=0.9):
    m = state["m"] = beta * state.get("m", torch.zeros_like(p)) + (1 - beta) * g
    rows = m.reshape(m.shape[0], -1)  # a row: one index of dim 0, the rest flattened
    centred = rows - rows.mean(1, keepdim=True)
    update = (centred / (centred.amax(1, keepdim=True).abs() + 1)).reshape(p.shape)
    return p - lr * (p.norm() / (update.norm() + 1)) * update


def _assert_matches(make, make_reference, shapes, device):
    """``make(params)`` on ``device`` against ``make_reference(params)`` on the CPU: the
    parameters and every state the reference keeps under the same name."""
    ours, o1 = _run(make, shapes, device)
    ref, o2 = _run(make_reference, shapes, torch.device("cpu"))
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < F32_TOL, tuple(b.shape)
        for key, value in o2.state[b].items():
            got = o1.state[a][key].cpu()
            if value.shape == b.shape:
                assert norm_rel(got, value) < F32_TOL, key
            else:  # the step count
                assert torch.equal(got.double(), value.double()), key


def _snapshot(params, opt):
    return ([p.detach().clone() for p in params],
            {i: {k: v.clone() for k, v in opt.state[p].items()} for i, p in enumerate(params)})


def _assert_unchanged(params, opt, snapshot):
    values, states = snapshot
    for i, p in enumerate(params):
        assert torch.equal(p.detach(), values[i])
        assert opt.state[p].keys() == states[i].keys()
        for k, v in states[i].items():
            assert torch.equal(opt.state[p][k], v), (i, k)


# ---- declarations ----------------------------------------------------------------------

def test_supports_stays_within_the_declared_devices_and_dtypes(backend):
    name, b, here = backend
    caps = b.capabilities
    devices = [torch.device("cpu"), torch.device("meta")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        for dtype in FLOAT_DTYPES + (torch.int32, torch.complex64):
            if b.supports(device, dtype):
                assert caps.devices is None or device.type in caps.devices, (name, device)
                assert dtype in caps.dtypes, (name, dtype)
    # and where it runs, it takes every dtype it declares
    assert all(b.supports(here, dtype) for dtype in caps.dtypes), name
    if b.auto_devices is not None and caps.devices is not None:
        assert set(b.auto_devices) <= set(caps.devices)


def test_launcher_follows_the_protocol_and_shows_its_source(backend):
    name, b, _ = backend
    spec = optforge.AdamW.rule
    compiled = compile_rule(spec, spec.default_variant)
    launcher = b.build(compiled.plan)
    assert isinstance(launcher, Launcher) and isinstance(launcher.checks_tensors, bool)
    assert not b.capabilities.matrix_stages or isinstance(launcher, MatrixLauncher)
    source = b.source(compiled.plan)
    compile(source, f"<{name} AdamW>", "exec")  # valid Python, whatever it builds
    assert "exp_avg" in source and "exp_avg_sq" in source
    compile(launcher.source, f"<{name} AdamW launcher>", "exec")
    # what `optforge show` prints is what runs; the Triton interpreter runs a variant of
    # the compiled kernel (bfloat16 moved as raw bits), which `show` does not print
    if not (name == "triton" and INTERPRETED):
        assert launcher.source == source


# ---- stepping against the torch backend ------------------------------------------------

def test_an_elementwise_rule_matches_torch_optim(backend):
    name, _, device = backend
    _assert_matches(lambda ps: optforge.AdamW(ps, lr=1e-2, weight_decay=0.1, backend=name),
                    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
                    [(1,), (1023,), (7, 13)], device)


def test_a_tensor_reduction_rule_matches_plain_torch(backend):
    name, b, device = backend
    make = lambda ps: optforge.Optimizer(ps, tensor_norm_only, backend=name)  # noqa: E731
    if not b.capabilities.reduce_stages:
        with pytest.raises(BackendError, match=f"backend {name!r} cannot run rule"):
            _run(make, [(5,)], device, steps=1)
        return
    _assert_matches(make, lambda ps: Reference(ps, reference_tensor_norm),
                    [(1,), (300,), (7, 13)], device)


def test_a_row_reduction_rule_matches_plain_torch_or_is_refused(backend):
    name, b, device = backend
    make = lambda ps: optforge.Optimizer(ps, row_and_tensor_norms, backend=name)  # noqa: E731
    if not (b.capabilities.reduce_stages and b.capabilities.row_col_scopes):
        with pytest.raises(BackendError, match=f"backend {name!r} cannot run rule"):
            _run(make, [(3, 4)], device, steps=1)
        return
    _assert_matches(make, lambda ps: Reference(ps, reference_row_and_tensor),
                    [(7, 13), (4, 3, 5)], device)


def test_a_matrix_rule_matches_torch_optim_muon(backend):
    """Orthogonalized momentum is torch.optim.Muon without Nesterov, weight decay or lr
    scaling (wide weights: its "original" scale sqrt(max(1, A/B)) is 1). The matrix stage
    runs torch matmuls for every backend without its own and feeds the backend's
    elementwise kernel through a buffer."""
    name, _, device = backend
    _assert_matches(lambda ps: optforge.Optimizer(ps, orthogonal_momentum, backend=name),
                    lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.9, nesterov=False,
                                                weight_decay=0.0),
                    [(7, 13), (8, 16)], device)


# ---- declared capabilities against behaviour -------------------------------------------

def _sgd_launcher(b):
    spec = optforge.SGD.rule
    compiled = compile_rule(spec, spec.default_variant)
    scalars = compiled.scalars(spec.hyper_values({**spec.defaults, "lr": 0.1}), 1.0)
    return b.build(compiled.plan), scalars


def test_strided_tensors_run_in_place_exactly_when_declared(backend):
    name, b, device = backend
    launcher, scalars = _sgd_launcher(b)
    p = torch.randn(8, 6, device=device).t()  # dense, not contiguous; grad laid out alike
    g = torch.randn(8, 6, device=device).t()
    dense = p.contiguous()
    before = p.clone()
    if b.capabilities.strided_tensors:
        launcher([p], [g], [], scalars, prepared=launcher.check([p], [g], [], ["parameter 0"]))
        launcher([dense], [g.contiguous()], [], scalars)
        assert torch.equal(p, dense) and not torch.equal(p, before)
    else:
        with pytest.raises(Exception, match="parameter 0.* not contiguous"):
            launcher.check([p], [g], [], ["parameter 0"])
        assert torch.equal(p, before)


def test_a_view_shaped_parameter_steps_like_its_dense_copy(backend):
    """Whatever the backend reads, the runtime stages what it cannot (runtime/staging)."""
    name, _, device = backend
    base = torch.randn(10, 5, 2, device=device)
    view = torch.nn.Parameter(base[..., 0])  # neither contiguous nor dense
    dense = torch.nn.Parameter(base[..., 0].contiguous())
    for p in (view, dense):
        p.grad = torch.linspace(-1, 1, 50, device=device).reshape(10, 5)
    o1 = optforge.Adam([view], lr=0.1, backend=name)
    o2 = optforge.Adam([dense], lr=0.1, backend=name)
    for _ in range(2):
        o1.step()
        o2.step()
    assert torch.equal(view.detach(), dense.detach())
    assert torch.equal(o1.state[view]["exp_avg"], o2.state[dense]["exp_avg"])


class Wrapper(torch.Tensor):
    """A minimal tensor subclass with its own dispatch (as DTensor has)."""

    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype,
                                                   device=inner.device)

    def __init__(self, inner):
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        def unwrap(x):
            return x.inner if isinstance(x, Wrapper) else x
        return func(*[unwrap(a) for a in args],
                    **{k: unwrap(v) for k, v in (kwargs or {}).items()})


def test_tensor_subclasses_step_or_are_refused_before_any_write(backend):
    name, b, device = backend
    p = Wrapper(torch.ones(5, device=device))
    p.grad = torch.full((5,), 2.0, device=device)
    opt = optforge.SGD([p], lr=0.1, momentum=0.9, backend=name)
    if b.capabilities.tensor_subclasses:
        opt.step()
        opt.step()  # p = 1 - 0.2 = 0.8, buffer 2 * 1.9 = 3.8, p = 0.8 - 0.38
        assert torch.allclose(p.inner.cpu(), torch.full((5,), 0.42))
    else:
        with pytest.raises(UnsupportedTensorError, match="parameter 0 of group 0 is a .*Wrapper"):
            opt.step()
        assert torch.equal(p.inner.cpu(), torch.ones(5)) and not opt.state.get(p)


def test_stochastic_rounding_when_declared_nearest_even_otherwise(backend):
    """An SGD step under half a bfloat16 ulp: nearest-even never moves the weights; with
    param_rounding="stochastic" a backend declaring stochastic_rounding moves them by lr
    on average, with the torch backend's bits (one Philox stream); a backend that does
    not declare it is refused by name, nothing written."""
    name, b, device = backend
    if torch.bfloat16 not in b.capabilities.dtypes:
        pytest.skip(f"{name} takes no bfloat16 parameters")
    n, lr = 100_000, 2.0**-10

    def stepped(backend_name, **storage):
        p = torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16, device=device))
        p.grad = torch.full((n,), -1.0, dtype=torch.bfloat16, device=device)
        opt = optforge.SGD([p], lr=lr, backend=backend_name, seed=3, **storage)
        return p, opt

    p, opt = stepped(name)
    opt.step()
    assert torch.equal(p.detach().float().cpu(), torch.ones(n))
    p, opt = stepped(name, param_rounding="stochastic")
    if not b.capabilities.stochastic_rounding:
        with pytest.raises(BackendError, match="cannot round stores stochastically"):
            opt.step()
        assert torch.equal(p.detach().float().cpu(), torch.ones(n)) and not opt.state.get(p)
        return
    opt.step()
    sigma = 2**-7 * math.sqrt(0.125 * 0.875 / n)  # rounds up with probability 1/8
    assert abs(p.detach().float().mean().item() - (1.0 + lr)) < 5 * sigma
    reference, opt = stepped("torch", param_rounding="stochastic")
    opt.step()
    assert torch.equal(p.detach().view(torch.int16).cpu(),
                       reference.detach().view(torch.int16).cpu())


# ---- refusals leave everything as it was ----------------------------------------------

def test_a_launcher_that_checks_tensors_refuses_a_bad_one_by_name(backend):
    """``checks_tensors`` is a promise the runtime relies on (it then leaves the stored
    states' dtype, device and shape to the launcher's check)."""
    name, b, device = backend
    spec = optforge.AdamW.rule
    compiled = compile_rule(spec, spec.default_variant)
    launcher = b.build(compiled.plan)
    if not launcher.checks_tensors:
        pytest.skip(f"{name}'s launcher leaves the state checks to the runtime")
    params = [torch.zeros(4, device=device), torch.zeros(3, device=device)]
    states = [[torch.zeros_like(p) for p in params] for _ in compiled.plan.states]
    states[0][1] = states[0][1].double()
    with pytest.raises((RuntimeError, TypeError, ValueError),
                       match=f"{list(compiled.plan.states)[0]}.*parameter 1"):
        launcher.check(params, [torch.ones_like(p) for p in params], states,
                       ["parameter 0", "parameter 1"])


def test_a_bad_state_is_refused_naming_it_before_any_write(backend):
    """One corrupted state in a two-parameter bucket: the step raises naming the state and
    the parameter, and neither parameter nor any state or step count moved."""
    name, _, device = backend
    params = [torch.nn.Parameter(torch.randn(6, device=device)) for _ in range(2)]
    opt = optforge.AdamW(params, lr=0.1, backend=name)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    opt.state[params[1]]["exp_avg"] = opt.state[params[1]]["exp_avg"].double()
    snapshot = _snapshot(params, opt)
    with pytest.raises((RuntimeError, TypeError, ValueError),
                       match=r"(?s)(exp_avg.*parameter 1 of group 0|parameter 1 of group 0"
                             r".*exp_avg)"):
        opt.step()
    _assert_unchanged(params, opt, snapshot)


def test_an_undeclared_dtype_is_refused_by_name_before_any_write(backend):
    name, b, device = backend
    refused = [d for d in FLOAT_DTYPES if d not in b.capabilities.dtypes]
    if not refused:
        pytest.skip(f"{name} declares every float dtype")
    p = torch.nn.Parameter(torch.randn(4, device=device, dtype=refused[0]))
    p.grad = torch.ones_like(p)
    opt = optforge.AdamW([p], backend=name)
    before = p.detach().clone()
    with pytest.raises(BackendError, match=str(refused[0]).replace("torch.", "")):
        opt.step()
    assert torch.equal(p.detach(), before) and not opt.state.get(p)
