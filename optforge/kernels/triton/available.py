"""Where the triton backend can run: CUDA devices, and the CPU under TRITON_INTERPRET=1.

The interpreter is a test tool (about 1 ms per program): the registry lets ``"auto"``
pick triton only for CUDA tensors, so the CPU path is reached by asking for
``backend="triton"`` explicitly with the interpreter on.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    # found, not imported: importing triton decorates its own library kernels
    # (tl.randint...) in whatever mode TRITON_INTERPRET selects at that moment
    return importlib.util.find_spec("triton") is not None


def check_interpreter_consistent() -> None:
    """Raise if TRITON_INTERPRET=1 was set after triton was imported: triton's library
    functions (tl.randint) were then built for the GPU and fail inside the interpreter."""
    if not interpreter_on():
        return
    from triton.language import random
    from triton.runtime.interpreter import InterpretedFunction
    if not isinstance(random.randint, InterpretedFunction):
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton was imported; set it "
                           "before the first import of triton (e.g. in the environment)")


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
