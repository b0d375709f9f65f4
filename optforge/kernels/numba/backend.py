"""The numba backend's declaration: one parallel CPU kernel per bucket.

Importing this module imports neither numba nor the launcher (numba takes ~0.3 s to
import): ``build`` does, the first time a rule runs on it.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from ...compiler.plan import KernelPlan
from ..protocol import FLOAT_DTYPES, Backend, Capabilities, declared_support

CAPABILITIES = Capabilities(devices=("cpu",), dtypes=FLOAT_DTYPES, reduce_stages=True,
                            row_col_scopes=True, matrix_stages=False, strided_tensors=True,
                            stochastic_rounding=True, tensor_subclasses=False)


@functools.cache
def numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def build(plan: KernelPlan):
    from ...compiler.quant_plan import quantized_states
    if quantized_states(plan):  # 8-bit states: kernels/numba/quant_launcher.py
        from .quant_launcher import QuantNumbaLauncher
        return QuantNumbaLauncher(plan)
    from .launcher import NumbaLauncher
    return NumbaLauncher(plan)


def source(plan: KernelPlan) -> str:
    from ...compiler.codegen import source as generated
    return generated(plan, "numba")


def _available(device: torch.device) -> bool:
    return numba_installed()


NUMBA = Backend("numba", declared_support(CAPABILITIES, _available), build, source,
                CAPABILITIES, auto_devices=("cpu",), auto_rank=10)
