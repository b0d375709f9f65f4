"""The triton backend's declaration: one fused GPU kernel per bucket (CUDA), or the
Triton interpreter on the CPU (``TRITON_INTERPRET=1``, a test tool "auto" never picks).

Importing this module does not import triton: ``build`` does, the first time a rule runs.
"""
from __future__ import annotations

from ...compiler.plan import KernelPlan
from ..protocol import Backend, Capabilities
from .available import DTYPES, triton_supports

CAPABILITIES = Capabilities(devices=("cuda", "cpu"), dtypes=DTYPES, reduce_stages=True,
                            row_col_scopes=True, matrix_stages=False, strided_tensors=False,
                            stochastic_rounding=True, tensor_subclasses=False)


def build(plan: KernelPlan, **options):
    """``options``: the launcher's own (``stochastic=("p",)``, ``generator``, ``tuner``)."""
    from ...compiler.quant_plan import quantized_states
    if quantized_states(plan):  # 8-bit states: kernels/triton/quant_launcher.py
        from .quant_launcher import QuantTritonLauncher
        return QuantTritonLauncher(plan, **options)
    from .launcher import TritonLauncher
    return TritonLauncher(plan, **options)


def source(plan: KernelPlan) -> str:
    from ...compiler.codegen import source as generated
    return generated(plan, "triton")


TRITON = Backend("triton", triton_supports, build, source, CAPABILITIES,
                 auto_devices=("cuda",), auto_rank=20)
