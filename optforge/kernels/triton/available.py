"""Where the triton backend can run: CUDA devices, and the CPU under TRITON_INTERPRET=1.

The interpreter is a test tool (about 1 ms per program): the registry lets ``"auto"``
pick triton only for CUDA tensors, so the CPU path is reached by asking for
``backend="triton"`` explicitly with the interpreter on.
"""
from __future__ import annotations

import functools
import os

import torch

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_on() -> bool:
    # triton reads this variable when a kernel is decorated, i.e. when the generated
    # module is first imported: it must be set before the first launch in the process
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_supports(device: torch.device, dtype: torch.dtype) -> bool:
    if dtype not in DTYPES or not triton_importable():
        return False
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and interpreter_on()
