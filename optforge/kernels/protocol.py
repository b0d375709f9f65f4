"""The contract between the runtime and a backend: what a launcher does, what a backend declares.

A backend is a printer (compiler/printers), the code that loads and calls what it prints
(a *launcher*, here in kernels/), and a ``Backend`` record that says what the launcher can
run. The runtime reads only the record and calls only the methods below: it never probes
a launcher for methods or asks for its class. ``kernels/README.md`` is the recipe.

Argument conventions shared by every method (one *bucket*: tensors of one device, dtype
and step count, one launch each):

* ``params``, ``grads``: lists of tensors, ``grads[j]`` the gradient of ``params[j]``;
* ``states``: one list per name of ``plan.states`` (states, inputs, buffers, in plan
  order), each aligned with ``params``; a buffer a matrix stage has not filled yet is
  ``None`` in the check phase;
* ``scalars``: the run-time scalars of the host prologue (hyperparameters, bias
  corrections) in ``plan.scalars`` order; a new lr never recompiles;
* ``reduced``: per parameter, the tuple of finished reductions of the earlier stages;
* ``labels[j]``: how an error names ``params[j]`` ("parameter 3 of group 1").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from ..compiler.plan import KernelPlan

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@runtime_checkable
class Launcher(Protocol):
    """The loaded kernels of one plan on one backend (built once per rule variant)."""

    # True when check() validates dtype, device, shape and layout of every tensor the
    # kernels touch; False leaves the stored states' check to the runtime
    checks_tensors: bool
    source: str  # the generated code it runs (for `optforge show` and bug reports)

    def check(self, params, grads, states, labels=None) -> Any:
        """The check phase, before any kernel of the step runs: raise naming the tensor
        (by ``labels``) if this bucket cannot run. May return what it derived (address
        tables); the runtime hands it back to ``__call__`` as ``prepared``."""

    def reduce(self, stage: int, params, grads, states, scalars, reduced,
               prepared=None) -> list[tuple]:
        """Reduce stage ``stage`` (``plan.reduce_stages[stage]``): each tensor's partial
        reductions, in the stage's order; nothing is written. The runtime finishes them
        (sums partials, combines group scopes across buckets). ``prepared``: what
        ``check`` returned for these very tensors this step (or None), as for
        ``__call__``."""

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        """The elementwise stage: write the new parameters and states in place."""


@runtime_checkable
class MatrixLauncher(Launcher, Protocol):
    """A launcher that also runs matrix stages (``Capabilities.matrix_stages``)."""

    def matrix(self, stage: int, params, grads, states, scalars, reduced) -> list[tuple]:
        """Matrix stage ``stage``: per tensor, its outputs (buffers shaped like the
        parameter, matrix states' new values) in ``plan.matrix_stages[stage].outputs``
        order; nothing is written."""

    def matrix_check(self, stage: int, params, grads, states, scalars, reduced) -> None:
        """Raise, naming it, if a run-time scalar of matrix stage ``stage`` is out of range
        (Muon's ns_steps), before anything of the step is written."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend's launchers can run, declared rather than found out by trying.

    The runtime's policy (runtime/backends.py) reads these; the conformance test
    (tests/kernels/test_backend_conformance.py) checks each against the backend's
    behaviour. The defaults are the safe ones: a new backend claims nothing it has not
    been shown to do.
    """

    # device types its kernels can run on (None: any device torch has)
    devices: tuple[str, ...] | None = None
    # parameter dtypes its kernels take (states may be stored in others, see storage)
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    # runs reduce stages (norm, dot, sum, mean, amax, count): ``Launcher.reduce``
    reduce_stages: bool = False
    # reductions over rows or columns (``over="row"``/``"col"``), not only whole tensors
    row_col_scopes: bool = False
    # runs matrix stages itself (``MatrixLauncher``); without it the runtime runs them on
    # the torch backend and hands the results to this backend as read-only buffers
    matrix_stages: bool = False
    # reads a parameter whose tensors share one dense non-contiguous layout (a transposed
    # weight, channels_last) in place; without it the runtime steps contiguous copies
    strided_tensors: bool = False
    # rounds the stores a plan marks stochastic (the storage options ``rounding`` /
    # ``param_rounding="stochastic"``: ``TensorRef.rounding``, ``abi.roundings``) with the
    # one Philox stream of compiler/rounding.py, bit for bit as the torch backend; without
    # it the runtime refuses such a plan by name, or runs it on torch under "auto"
    stochastic_rounding: bool = False
    # dispatches through tensor subclasses with their own __torch_dispatch__ (DTensor);
    # without it such tensors are refused in the check phase, naming the parameter
    tensor_subclasses: bool = False


@dataclass(frozen=True)
class Backend:
    """A backend as the runtime sees it; declared by the backend's own module in kernels/
    and listed in ``kernels/registry.py``."""

    name: str
    # can it run tensors of this device and dtype here, now? (numba installed, a CUDA
    # device visible, the Triton interpreter on): within ``capabilities``
    supports: Callable[[torch.device, torch.dtype], bool]
    build: Callable[..., Launcher]  # build(plan) -> a Launcher for that plan
    source: Callable[[KernelPlan], str]  # the generated code, for `optforge show`
    capabilities: Capabilities = field(default_factory=Capabilities)
    # device types "auto" may pick it for (None: any it supports); triton runs CPU
    # tensors only in its interpreter, a test tool that auto must never pick
    auto_devices: tuple[str, ...] | None = None
    # "auto" tries backends from the highest rank down (ties: registration order); the
    # torch reference runs everywhere and ranks 0, so it is the fallback
    auto_rank: int = 0


def declared_support(capabilities: Capabilities,
                     available: Callable[[torch.device], bool] = lambda device: True
                     ) -> Callable[[torch.device, torch.dtype], bool]:
    """A ``Backend.supports`` that accepts exactly the declared devices and dtypes, where
    ``available(device)`` says the backend's library and hardware are present."""
    def supports(device: torch.device, dtype: torch.dtype) -> bool:
        devices = capabilities.devices
        return ((devices is None or device.type in devices) and dtype in capabilities.dtypes
                and available(device))
    return supports
