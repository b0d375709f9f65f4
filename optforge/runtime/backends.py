"""Which backend runs a bucket of tensors, and the policy when one cannot.

``"auto"`` picks the fastest backend that supports the tensors' device and dtype;
an explicitly requested backend that cannot run them raises, naming why.
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..compiler.plan import KernelPlan

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class BackendError(RuntimeError):
    """A backend was requested that cannot run here."""


@dataclass(frozen=True)
class Backend:
    name: str
    supports: Callable[[torch.device, torch.dtype], bool]
    build: Callable[[KernelPlan], Callable]
    source: Callable[[KernelPlan], str]  # the generated code, for `optforge show`
    # device types "auto" may pick this backend for (None: any it supports); triton
    # runs CPU tensors only in its interpreter, a test tool that auto must never pick
    auto_devices: tuple[str, ...] | None = None


def _torch_build(plan: KernelPlan):
    from ..kernels.torch_launcher import TorchLauncher
    return TorchLauncher(plan)


def _torch_source(plan: KernelPlan) -> str:
    from ..compiler.codegen import source
    return source(plan, "torch")


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", lambda device, dtype: dtype in FLOAT_DTYPES, _torch_build,
                     _torch_source),
}


def _triton_supports(device: torch.device, dtype: torch.dtype) -> bool:
    from ..kernels.triton.available import triton_supports
    return triton_supports(device, dtype)


def _triton_build(plan: KernelPlan):
    from ..kernels.triton.launcher import TritonLauncher
    return TritonLauncher(plan)


def _triton_source(plan: KernelPlan) -> str:
    from ..compiler.codegen import source
    return source(plan, "triton")


BACKENDS["triton"] = Backend("triton", _triton_supports, _triton_build, _triton_source,
                             auto_devices=("cuda",))


@functools.cache
def _numba_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("numba") is not None


def _numba_supports(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype in FLOAT_DTYPES and _numba_installed()


def _numba_build(plan: KernelPlan):
    from ..kernels.numba.launcher import NumbaLauncher
    return NumbaLauncher(plan)


def _numba_source(plan: KernelPlan) -> str:
    from ..compiler.codegen import source
    return source(plan, "numba")


BACKENDS["numba"] = Backend("numba", _numba_supports, _numba_build, _numba_source,
                            auto_devices=("cpu",))
# Tried in order by "auto"; the torch backend runs everywhere, so it is last.
AUTO_ORDER = ["triton", "numba", "torch"]
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
    for name in AUTO_ORDER:
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
