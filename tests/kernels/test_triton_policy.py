"""When the triton backend runs, and the clear errors when it cannot."""
import warnings

import pytest
import torch

from tests.triton_env import DEVICE, INTERPRETED  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.kernels.triton.layout import LayoutError
from optforge.runtime import backends
from optforge.runtime.backends import BackendError, select


def test_auto_never_picks_triton_for_cpu_tensors():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert select("auto", torch.device("cpu"), dtype).name != "triton"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_picks_triton_for_cuda_tensors():
    assert select("auto", torch.device("cuda"), torch.float32).name == "triton"


def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="triton"):
        select("triton", torch.device("cpu"), torch.float32)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(BackendError, match="triton"):
        optforge.AdamW([p], backend="triton").step()


def test_float64_is_refused_by_name():
    with pytest.raises(BackendError, match="float64"):
        select("triton", DEVICE, torch.float64)


def test_auto_fallback_warns_once_per_device_type_and_dtype(monkeypatch):
    monkeypatch.setattr(backends, "_warned_fallback", set())
    meta = torch.device("meta")  # no compiled backend runs there: torch it is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert select("auto", meta, torch.float32).name == "torch"
        select("auto", meta, torch.bfloat16)
    fallbacks = [w for w in caught if "torch reference backend" in str(w.message)]
    assert len(fallbacks) == 2


def test_fallback_warning_points_at_the_callers_step(monkeypatch):
    monkeypatch.setattr(backends, "_warned_fallback", set())
    p = torch.nn.Parameter(torch.randn(4, device="meta"))
    p.grad = torch.randn(4, device="meta")
    opt = optforge.AdamW([p], lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    fallback, = [w for w in caught if "torch reference backend" in str(w.message)]
    assert fallback.filename == __file__


def test_non_contiguous_parameter_is_named_by_the_launcher_and_staged_by_the_runtime():
    p = torch.nn.Parameter(torch.randn(8, 6, device=DEVICE).t())
    p.grad = torch.randn(8, 6, device=DEVICE).t()
    opt = optforge.SGD([p], lr=0.1, backend="triton")
    group = opt.param_groups[0]
    compiled = opt._compiled(group)
    scalars = compiled.scalars(opt.spec.hyper_values(group), 1.0, {})
    with pytest.raises(LayoutError, match="'p' of parameter 0 is not contiguous"):
        compiled.launcher(backends.BACKENDS["triton"])([p], [p.grad], [], scalars)
    dense = torch.nn.Parameter(p.detach().contiguous())
    dense.grad = p.grad.contiguous()
    opt.step()  # the runtime steps a dense copy and writes it back (runtime/staging.py)
    optforge.SGD([dense], lr=0.1, backend="triton").step()
    assert torch.equal(p.detach(), dense.detach())


def test_unsupported_state_dtype_is_named():
    from optforge.dsl import Rule, grad, param, state

    def with_f64_state(lr=0.1):
        m = state("m", dtype="float64") + grad()
        return Rule(param() - lr * m, m=m)

    p = torch.nn.Parameter(torch.ones(4, device=DEVICE))
    p.grad = torch.ones(4, device=DEVICE)
    with pytest.raises(optforge.DSLError, match="'m' is stored as float64"):
        optforge.Optimizer([p], with_f64_state, backend="triton").step()


def test_show_prints_triton_source():
    from optforge.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["show", "AdamW", "--backend", "triton"]) == 0
    assert "@triton.jit" in out.getvalue() and "tl.store" in out.getvalue()


def test_interpreted_flag_matches_device():
    assert INTERPRETED == (DEVICE.type == "cpu")
