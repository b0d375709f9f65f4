"""The torch backend's declaration: generated torch code, any device, the reference.

It is the numerical oracle the other backends are tested against and the fallback of
``backend="auto"``: torch operations run on any device and layout and dispatch through
tensor subclasses (DTensor). Its launcher (torch_launcher.py) is the only one that runs
matrix stages; the runtime runs every backend's matrix stages on it.
"""
from __future__ import annotations

from ..compiler.plan import KernelPlan
from .protocol import FLOAT_DTYPES, Backend, Capabilities, declared_support

CAPABILITIES = Capabilities(devices=None, dtypes=FLOAT_DTYPES, reduce_stages=True,
                            row_col_scopes=True, matrix_stages=True, strided_tensors=True,
                            stochastic_rounding=True, tensor_subclasses=True)


def build(plan: KernelPlan):
    from ..compiler.quant_plan import quantized_states
    if quantized_states(plan):  # 8-bit states: unpacked, stepped, packed
        from .quantized_torch import QuantizedTorchLauncher
        return QuantizedTorchLauncher(plan)
    from .torch_launcher import TorchLauncher  # imported when first used
    return TorchLauncher(plan)


def source(plan: KernelPlan) -> str:
    from ..compiler.codegen import source as generated
    return generated(plan, "torch")


TORCH = Backend("torch", declared_support(CAPABILITIES), build, source, CAPABILITIES,
                auto_devices=None, auto_rank=0)
