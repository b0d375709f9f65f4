"""Elementwise functions of the torch backend's generated code where torch's own differs
from the other backends (numba's numpy, triton's helpers).

``sign``: torch.sign(NaN) is 0, numpy's and triton's sign of NaN is NaN. The backends
must give the same values, and a NaN that a rule's ``sign`` swallowed would move
parameters by a made-up step (Lion, Signum) or send a made-up vote (DistributedLion:
+1 and no refusal) where numba and triton refuse the step; so NaN stays NaN here too.
"""
from __future__ import annotations

import torch


def sign(x: torch.Tensor) -> torch.Tensor:
    """-1, 0 or 1 by the sign of ``x``, and NaN where ``x`` is NaN (as numpy's sign)."""
    return torch.where(torch.isnan(x), x, torch.sign(x))
