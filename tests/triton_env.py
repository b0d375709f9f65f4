"""Where the triton tests run: a CUDA GPU (compiled kernels) if one is visible and
TRITON_INTERPRET is not set, else the CPU under the Triton interpreter.

Imported first by every triton test module: triton reads TRITON_INTERPRET when a kernel
is decorated, i.e. when a generated module is imported, so it must be set before any
launcher is built. Setting it process-wide is harmless to the other tests: "auto"
never picks triton for CPU tensors and the shared `backend` fixture was parametrized
when tests/conftest.py was imported, before this module.
"""
import os
import sys

import torch

_UNSET = os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
# A script that compiled Triton ahead of time and imports test helpers (the sm_90 AOT
# check runs one in a subprocess) imported triton first, on purpose, without the
# interpreter: its mode stays; the tests themselves always come here first (conftest).
_COMPILING_SCRIPT = _UNSET and "triton" in sys.modules
if torch.cuda.is_available() and _UNSET:
    DEVICE = torch.device("cuda")
else:
    if not _COMPILING_SCRIPT:
        os.environ["TRITON_INTERPRET"] = "1"
    DEVICE = torch.device("cpu")

INTERPRETED = DEVICE.type == "cpu"

# Import triton now, in the mode just chosen: torch imports it lazily (torch._dynamo, on
# the first optimizer step), and a later test that unsets TRITON_INTERPRET for a moment
# must not be the one that decides how triton's own library kernels are built.
import triton  # noqa: E402,F401

from optforge.kernels.triton.available import check_interpreter_consistent  # noqa: E402

if not _COMPILING_SCRIPT:
    check_interpreter_consistent()  # fails clearly if something imported triton before us
