"""The one entry from a plan to generated source: ``source(plan, backend, **options)``.

Launchers and the runtime ask here, never a printer module: which printer serves a
backend, and how its options are spelled, stays inside the compiler. Printers are
imported on first use (``optforge show`` for torch never loads the triton printer).
"""
from __future__ import annotations

from .errors import CompileError
from .plan import KernelPlan

BACKENDS = ("torch", "numba", "triton")


def source(plan: KernelPlan, backend: str, **options) -> str:
    """The module source for ``plan`` on ``backend``.

    * torch: no options (one module for every dtype: it computes in ``compute_dtype``);
    * numba: ``param_dtype`` (default "float32");
    * triton: ``param_dtype``, ``stochastic`` (the written bfloat16 tensors rounded
      stochastically), ``interpreted`` (for TRITON_INTERPRET=1).
    """
    if backend == "torch":
        from .printers.torch import torch_source
        return torch_source(plan, **options)
    if backend == "numba":
        from .quant_plan import quantized_states
        if quantized_states(plan):  # 8-bit states: their own kernel shape
            from .printers.numba_quant import numba_quant_source
            return numba_quant_source(plan, **options)
        from .printers.numba import numba_source
        return numba_source(plan, **options)
    if backend == "triton":
        from .quant_plan import quantized_states
        if quantized_states(plan):  # 8-bit states: tiles of whole quantization blocks
            from .printers.triton_quant import triton_quant_source
            options.pop("stochastic", None)  # (refused by the 8-bit kernel's launcher)
            return triton_quant_source(plan, **options)
        from .printers.triton import triton_source
        return triton_source(plan, **options)
    raise CompileError(f"rule {plan.rule_name!r}: no code generator for backend {backend!r} "
                       f"(known: {', '.join(BACKENDS)})")


def rounding_kernel_source(interpreted: bool = False) -> str:
    """The triton module with the bfloat16 rounding helpers and a kernel applying them to
    one tensor (for the helpers' tests and ``kernels/triton/rounding.py``)."""
    from .printers.triton import rounding_test_source
    return rounding_test_source(interpreted)
