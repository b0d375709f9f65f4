"""Which backend runs a bucket of tensors, and the policy when one cannot.

The backends themselves (what each can run, how it builds its launcher) are declared in
``optforge/kernels`` (``kernels/registry.py`` lists them, ``kernels/README.md`` is the
recipe for a new one); this module only chooses among them. ``"auto"`` picks the
highest-ranked backend that supports the tensors' device and dtype, falling back to the
torch reference with a one-time warning; an explicitly requested backend that cannot
run them raises, naming why.
"""
from __future__ import annotations

import os
import sys
import warnings

import torch

from ..compiler.quant_plan import quantized_states
from ..compiler.errors import CompileError
from ..compiler.plan import Rounding
from ..kernels.protocol import FLOAT_DTYPES, Backend, Capabilities, Launcher
from ..kernels.registry import BACKENDS

__all__ = ["BACKENDS", "Backend", "BackendError", "Capabilities", "FLOAT_DTYPES",
           "bucket_launcher", "check_backend_name", "select"]


class BackendError(RuntimeError):
    """A backend was requested that cannot run here."""


def auto_order() -> list[str]:
    """The names "auto" tries, best first: by rank, ties in registration order."""
    return sorted(BACKENDS, key=lambda n: -BACKENDS[n].auto_rank)  # stable: ties keep order


# (device type, dtype) pairs the torch fallback was announced for, once each
_warned_fallback: set[tuple[str, torch.dtype]] = set()


def check_backend_name(name: str) -> None:
    if name != "auto" and name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: 'auto', "
                           + ", ".join(repr(n) for n in BACKENDS))


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_OPTIM = os.path.dirname(os.path.abspath(torch.optim.__file__))
# torch.compiler.disable's wrapper around Optimizer.step sits between the user and us
_TORCH_DYNAMO = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "_dynamo")


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning raised in ``select`` at the first frame
    outside optforge, torch.optim and torch._dynamo (the user's ``opt.step()``), however
    deep the call."""
    frame, level = sys._getframe(2), 1  # frame 2: select's caller (level 2 for warn)
    while frame is not None:
        level += 1
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith((_PACKAGE + os.sep, _TORCH_OPTIM + os.sep,
                                _TORCH_DYNAMO + os.sep)):
            return level
        frame = frame.f_back
    return level


def select(requested: str, device: torch.device, dtype: torch.dtype) -> Backend:
    """The backend for one (device, dtype) bucket."""
    check_backend_name(requested)
    if requested != "auto":
        backend = BACKENDS[requested]
        if not backend.supports(device, dtype):
            raise BackendError(f"backend {requested!r} cannot run {dtype} tensors on {device}")
        return backend
    for name in auto_order():
        backend = BACKENDS[name]
        if backend.auto_devices is not None and device.type not in backend.auto_devices:
            continue
        if backend.supports(device, dtype):
            if name == "torch" and (device.type, dtype) not in _warned_fallback:
                _warned_fallback.add((device.type, dtype))
                warnings.warn(f"optforge: no compiled backend runs {dtype} tensors on "
                              f"{device.type}; using the torch reference backend (slower)",
                              RuntimeWarning, stacklevel=_caller_level())
            return backend
    raise BackendError(f"no backend supports {dtype} tensors on {device} "
                       f"(supported dtypes: {[str(d) for d in FLOAT_DTYPES]})")


def missing_capability(capabilities: Capabilities, plan) -> str | None:
    """Why a backend with these capabilities cannot run ``plan``'s stages (None: it can).
    Matrix stages are not asked for: the runtime runs them on the torch backend."""
    if plan.reductions and not capabilities.reduce_stages:
        return "it has no reduce stage yet (the rule uses norm/sum/mean/amax/count)"
    if not capabilities.row_col_scopes and any(r.scope in ("row", "col")
                                               for r in plan.reductions):
        return "it cannot reduce over rows or columns (the rule uses over='row' or 'col')"
    if not capabilities.stochastic_rounding and _rounds_stochastically(plan):
        return ("it cannot round stores stochastically (the param group sets rounding= or "
                "param_rounding='stochastic')")
    return None


def _rounds_stochastically(plan) -> bool:
    """Whether a store of ``plan`` or of its pre-stage plan is marked stochastic."""
    return any(ref.rounding == Rounding.STOCHASTIC
               for stage in (plan, plan.pre_plan) if stage is not None
               for ref, _ in stage.stores)


def bucket_launcher(requested: str, compiled, device: torch.device,
                    dtype: torch.dtype) -> tuple[Backend, Launcher]:
    """The backend and launcher that run ``compiled``'s plan for one (device, dtype)
    bucket. A backend that cannot run the plan's stages is refused by name when it was
    asked for, and replaced by the torch reference under "auto"."""
    backend = select(requested, device, dtype)
    why = missing_capability(backend.capabilities, compiled.plan)
    if why is None:
        if not compiled.plan.reductions:
            return backend, compiled.launcher(backend)
        try:
            return backend, compiled.launcher(backend)
        except CompileError as exc:  # a printer that refuses a reduce stage it was given
            why = (str(exc) if quantized_states(compiled.plan) else  # (8-bit: one pass only)
                   "it has no reduce stage yet (the rule uses norm/sum/mean/amax/count)")
    if requested != "auto":
        raise BackendError(f"backend {backend.name!r} cannot run rule {compiled.spec.name!r}: "
                           f"{why}; use backend='torch'")
    reference = BACKENDS["torch"]
    return reference, compiled.launcher(reference)
