"""Which backend runs a bucket of tensors, and the policy when one cannot.

``"auto"`` picks the fastest backend that supports the tensors' device and dtype;
an explicitly requested backend that cannot run them raises, naming why.
"""
from __future__ import annotations

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


def _torch_build(plan: KernelPlan):
    from ..kernels.torch_launcher import TorchLauncher
    return TorchLauncher(plan)


def _torch_source(plan: KernelPlan) -> str:
    from ..compiler.printers.torch import torch_source
    return torch_source(plan)


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", lambda device, dtype: dtype in FLOAT_DTYPES, _torch_build,
                     _torch_source),
}
# Tried in order by "auto"; the torch backend runs everywhere, so it is last.
AUTO_ORDER = ["torch"]


def check_backend_name(name: str) -> None:
    if name != "auto" and name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: 'auto', "
                           + ", ".join(repr(n) for n in BACKENDS))


def select(requested: str, device: torch.device, dtype: torch.dtype) -> Backend:
    """The backend for one (device, dtype) bucket."""
    check_backend_name(requested)
    if requested != "auto":
        backend = BACKENDS[requested]
        if not backend.supports(device, dtype):
            raise BackendError(f"backend {requested!r} cannot run {dtype} tensors on {device}")
        return backend
    for name in AUTO_ORDER:
        if BACKENDS[name].supports(device, dtype):
            return BACKENDS[name]
    raise BackendError(f"no backend supports {dtype} tensors on {device} "
                       f"(supported dtypes: {[str(d) for d in FLOAT_DTYPES]})")
