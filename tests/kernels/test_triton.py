"""The triton backend against the torch oracle, on a GPU or under TRITON_INTERPRET=1.

Each optimizer runs one bucket holding all four awkward shapes at once, so every test
also exercises the multi-tensor launch (address table + block map) and its masks.
Tolerances: float32 norm-relative 1e-6 as in the torch parity tests (different
rounding order of the fused float32 math, ~10 ulps); bfloat16 storage: both backends
compute in float32 and round to nearest even, so they agree to within one bfloat16
rounding (relative 2**-8) where the float32 values straddle a rounding boundary.
"""
import itertools
import sys

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.compiled import STATS, compile_rule
from tests.conftest import SHAPES, norm_rel

F32_TOL = 1e-6
BF16_TOL = 2.0**-8
STEPS = 10


def _sgd_configs():
    """Every structural variant of SGD (momentum zero or not, nesterov, maximize); the
    run-time values (dampening, weight decay) vary across them."""
    for momentum, nesterov, maximize in itertools.product((0.0, 0.9), (False, True),
                                                          (False, True)):
        if nesterov and momentum == 0:
            continue  # torch.optim.SGD rejects it
        yield dict(lr=0.05, momentum=momentum, dampening=0.0 if nesterov else 0.3,
                   nesterov=nesterov, weight_decay=0.1 if maximize else 0.0,
                   maximize=maximize)


CONFIGS = [("SGD", c) for c in _sgd_configs()] + [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-6)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=1e-2, amsgrad=True, maximize=True, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, amsgrad=True, maximize=True, weight_decay=0.3)),
    ("Adamax", dict(lr=1e-2)),
    ("Adamax", dict(lr=1e-2, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=1e-1)),
    ("Adagrad", dict(lr=1e-1, lr_decay=0.01, weight_decay=0.1,
                     initial_accumulator_value=0.2, maximize=True)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=1e-2, centered=True, alpha=0.9)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.5, maximize=True)),
    ("Lion", dict(lr=1e-3)),
    ("Lion", dict(lr=1e-3, weight_decay=0.1, betas=(0.95, 0.98))),
    ("Signum", dict(lr=1e-3)),
    ("Signum", dict(lr=1e-3, momentum=0.5, weight_decay=0.1)),
]
# every other catalogue rule at its defaults: none goes untested (SparseAdam steps sparse
# gradients only: tests/catalogue/test_sparse_adam.py runs it on triton against torch)
SPARSE_ONLY = {"SparseAdam"}
CONFIGS += [(name, {}) for name in optforge.CATALOGUE
            if name not in {n for n, _ in CONFIGS} | SPARSE_ONLY]


def _id(cfg):
    return cfg[0] + "-" + "-".join(f"{k}={v}" for k, v in cfg[1].items())


def _plan_of(cfg):
    spec = optforge.CATALOGUE[cfg[0]].rule
    return compile_rule(spec, spec.variant_of({**spec.defaults, **cfg[1]})).plan


def _inputs_of(cfg):
    """{input name: its decl} for the rules that read given(...) or layer statistics."""
    return {n: d for n, d in _plan_of(cfg).states.items() if d.kind == "input"}


# multi-stage rules (reduce stages) cost a few interpreted launches more per step: slow
# here; tests/kernels/test_triton_reduce.py covers every op and scope in the default run
CASES = [pytest.param(c, id=_id(c), marks=pytest.mark.slow)
         if _plan_of(c).reductions
         else pytest.param(c, id=_id(c)) for c in CONFIGS if not _inputs_of(c)]
INPUT_CASES = [pytest.param(c, id=_id(c)) for c in CONFIGS if _inputs_of(c)]


def run_both(make, shapes=SHAPES, steps=STEPS, dtype=torch.float32, seed=0, inputs=None,
             **step_kwargs):
    """The same gradients through a triton and a torch optimizer; returns both.

    ``inputs``: {name: decl} of the rule's inputs; each step both optimizers get the same
    random tensors through ``step(inputs=...)`` (param-shaped, or (8, rows | cols) for
    layer statistics)."""
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    ours = [torch.nn.Parameter(x.clone().to(DEVICE)) for x in init]
    ref = [torch.nn.Parameter(x.clone()) for x in init]
    o1, o2 = make(ours, "triton"), make(ref, "torch")
    for _ in range(steps):
        for a, b in zip(ours, ref):
            g = (torch.randn(b.shape, generator=gen) + 0.5 * b.detach().float()).to(dtype)
            a.grad, b.grad = g.to(DEVICE), g.clone()
        given1, given2 = {}, {}
        for name, decl in (inputs or {}).items():
            given1[name], given2[name] = {}, {}
            for a, b in zip(ours, ref):
                width = (b.shape[0] if decl.shape[1] == "rows" else b.numel() // b.shape[0]) \
                    if decl.shape else None
                x = torch.randn((8, width) if decl.shape else b.shape, generator=gen)
                given1[name][a], given2[name][b] = x.to(DEVICE), x.clone()
        o1.step(inputs=given1 or None, **step_kwargs)
        o2.step(inputs=given2 or None, **step_kwargs)
    return ours, ref, o1, o2


def _assert_close(ours, ref, o1, o2, tol):
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < tol, tuple(b.shape)
        for key, value in o2.state[b].items():
            if isinstance(value, torch.Tensor) and value.shape == b.shape:
                scale = max(value.double().norm().item(), b.grad.double().norm().item())
                err = (o1.state[a][key].cpu().double() - value.double()).norm().item() / scale
                assert err < tol, (key, tuple(b.shape))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("cfg", CASES)
def test_matches_torch_backend(cfg, dtype):
    name, kw = cfg
    make = lambda ps, backend: getattr(optforge, name)(ps, backend=backend, **kw)  # noqa: E731
    # matrix stages (orthogonalize) run torch matmuls, then the triton kernel reads their
    # buffers; they refuse 1-D parameters, so 2-D shapes only
    shapes = [(7, 13), (257, 129)] if _plan_of(cfg).matrix_stages else SHAPES
    ours, ref, o1, o2 = run_both(make, shapes=shapes, dtype=dtype)
    _assert_close(ours, ref, o1, o2, F32_TOL if dtype == torch.float32 else BF16_TOL)


@pytest.mark.parametrize("cfg", INPUT_CASES)
def test_rules_with_inputs_match_torch_backend(cfg):
    """Rules that read given(...) inputs (Hutchinson estimates, a previous gradient, a
    distillation gradient) or layer statistics: both backends get the same input tensors
    through step(inputs=...), 10 steps, float32."""
    name, kw = cfg
    make = lambda ps, backend: getattr(optforge, name)(ps, backend=backend, **kw)  # noqa: E731
    shapes = [(7, 13), (33, 5, 3, 3)] if _plan_of(cfg).matrix_stages else SHAPES
    extra = {"loss": 1.0} if name == "MKORH" else {}  # its switching test reads the loss
    ours, ref, o1, o2 = run_both(make, shapes=shapes, inputs=_inputs_of(cfg), **extra)
    _assert_close(ours, ref, o1, o2, F32_TOL)


@pytest.mark.parametrize("param_dtype,state_dtype", [(torch.bfloat16, "float32"),
                                                     (torch.float32, "bfloat16"),
                                                     (torch.float16, "float32")], ids=str)
def test_mixed_storage_dtypes(param_dtype, state_dtype):
    """A state declared with its own storage dtype: loaded and stored as that dtype."""
    from optforge.dsl import Rule, grad, param, sqrt, state

    def ema_rms(lr=1e-2, beta=0.9, eps=1e-8):
        p, g = param(), grad()
        v = beta * state("v", dtype=state_dtype) + (1 - beta) * g * g
        return Rule(p - lr * g / (sqrt(v) + eps), v=v)

    make = lambda ps, backend: optforge.Optimizer(ps, ema_rms, backend=backend)  # noqa: E731
    ours, ref, o1, o2 = run_both(make, dtype=param_dtype)
    assert o1.state[ours[0]]["v"].dtype == getattr(torch, state_dtype)
    _assert_close(ours, ref, o1, o2, BF16_TOL)


def test_one_launch_per_bucket(monkeypatch):
    """Five tensors of one (device, dtype): one kernel launch per step, not five."""
    params = [torch.nn.Parameter(torch.randn(s, device=DEVICE)) for s in
              [(3,), (5000,), (7, 13), (1,), (0,)]]
    opt = optforge.AdamW(params, backend="triton")
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # builds the kernel
    from optforge.kernels.triton import launcher as mod
    launches = []
    real = mod.TritonLauncher._launch
    monkeypatch.setattr(mod.TritonLauncher, "_launch",
                        lambda self, *a, **k: (launches.append(1), real(self, *a, **k)))
    opt.step()
    opt.step()
    assert len(launches) == 2


def test_lr_change_does_not_recompile():
    p_ours, p_ref = (torch.nn.Parameter(torch.ones(100, device=DEVICE)),
                     torch.nn.Parameter(torch.ones(100)))
    o1 = optforge.AdamW([p_ours], lr=1e-3, backend="triton")
    o2 = optforge.AdamW([p_ref], lr=1e-3, backend="torch")
    for lr in (1e-3, 5e-2, 0.2):
        for g in o1.param_groups + o2.param_groups:
            g["lr"], g["betas"] = lr, (0.8, 0.9)
        p_ours.grad, p_ref.grad = torch.full_like(p_ours, 0.3), torch.full_like(p_ref, 0.3)
        before = (STATS["kernels:triton"],
                  sum(k.startswith("optforge_gen_triton") for k in sys.modules))
        o1.step()
        o2.step()
        if lr != 1e-3:  # the first step may compile; later ones must not
            assert (STATS["kernels:triton"],
                    sum(k.startswith("optforge_gen_triton") for k in sys.modules)) == before
        assert norm_rel(p_ours.detach().cpu(), p_ref.detach()) < F32_TOL


@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "unaligned"])
def test_views_at_any_offset(offset):
    """Params that are views into one buffer, at a 16-byte-aligned offset or not (the
    vector-access hint is given only when every address of the launch allows it)."""
    from optforge.kernels.triton.layout import alignment
    assert alignment((0, 16, 4096)) == 16 and alignment((0, 4)) == 1
    base = torch.randn(40000 + offset, device=DEVICE)
    ours = [torch.nn.Parameter(base[offset:offset + 33000]),
            torch.nn.Parameter(base[offset + 33000:offset + 40000])]
    launcher = _adamw_launcher_after_two_steps(ours)
    layout = launcher._layouts[(ours[0].device, (33000, 7000))]
    assert layout.align == (16 if offset == 0 else 1)


def _adamw_launcher_after_two_steps(ours):
    """Two triton AdamW steps on ``ours`` checked against the torch backend on CPU copies;
    returns the triton launcher, whose cached layouts the alignment tests read."""
    ref = [torch.nn.Parameter(p.detach().cpu().clone()) for p in ours]
    o1 = optforge.AdamW(ours, lr=0.1, backend="triton")
    o2 = optforge.AdamW(ref, lr=0.1, backend="torch")
    for _ in range(2):
        for a, b in zip(ours, ref):
            g = torch.randn(b.shape)
            a.grad, b.grad = g.to(DEVICE), g
        o1.step()
        o2.step()
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < F32_TOL
    return o1.launcher_for(compile_rule(optforge.AdamW.rule, (False, False)), DEVICE,
                           torch.float32)


def test_empty_and_huge_offsets_are_masked():
    """A zero-element tensor launches nothing; a tensor whose last block is partial
    leaves the memory right after it untouched (masks)."""
    base = torch.zeros(5000, device=DEVICE)
    view = base[:4099]  # contiguous, with live memory right behind its end
    p = torch.nn.Parameter(view)
    e = torch.nn.Parameter(torch.zeros(0, device=DEVICE))
    opt = optforge.SGD([p, e], lr=1.0, backend="triton")
    p.grad, e.grad = torch.ones_like(p), torch.ones_like(e)
    opt.step()
    assert torch.all(base[:4099] == -1) and torch.all(base[4099:] == 0)


# ---- property test ----------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["AdamW", "Adam", "Lion", "Adagrad", "RMSprop", "SGD"]),
       lr=st.floats(1e-5, 0.5), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.5, 0.9999),
       wd=st.floats(0.0, 0.5), eps=st.floats(1e-10, 1e-3),
       shape=st.sampled_from([(1,), (33,), (5, 7), (4100,)]))
def test_random_hyperparameters_match_torch(name, lr, beta1, beta2, wd, eps, shape):
    kw = {"lr": lr, "weight_decay": wd}
    if name in ("AdamW", "Adam"):
        kw.update(betas=(beta1, beta2), eps=eps)
    elif name == "Lion":
        kw.update(betas=(beta1, beta2))
    elif name == "RMSprop":
        kw.update(alpha=beta2, eps=eps, momentum=beta1)
    elif name == "Adagrad":
        kw.update(eps=eps, lr_decay=beta1)
    else:
        kw.update(momentum=beta1)
    make = lambda ps, backend: getattr(optforge, name)(ps, backend=backend, **kw)  # noqa: E731
    ours, ref, o1, o2 = run_both(make, shapes=[shape, (3,)], steps=3)
    _assert_close(ours, ref, o1, o2, F32_TOL)


def test_one_misaligned_view_gets_its_own_launch():
    """Alignment is decided per tensor: the aligned tensors of a bucket keep the 128-bit
    hint (one launch), the misaligned view runs in a launch of its own without it."""
    from optforge.kernels.triton.layout import align_groups
    assert align_groups((0, 16, 32, 48), 2) == [(None, 16)]
    assert align_groups((0, 4, 32, 48), 2) == [((0,), 16), ((1,), 1)]  # p of tensor 1 is off
    assert align_groups((4, 4), 1) == [(None, 1)]
    base = torch.randn(7001, device=DEVICE)
    ours = [torch.nn.Parameter(torch.randn(33000, device=DEVICE)),
            torch.nn.Parameter(base[1:]),  # 4 bytes past an aligned address
            torch.nn.Parameter(torch.randn(5000, device=DEVICE))]
    launcher = _adamw_launcher_after_two_steps(ours)
    layout = launcher._layouts[(DEVICE, (33000, 7000, 5000))]
    assert layout.groups == [((0, 2), 16), ((1,), 1)]
