"""What a raw-memory launcher (numba, triton) checks of a packed sign buffer before its
kernel trusts an address with it (the layout: compiler/packed_signs.py).

A ``sign_bits`` buffer is, per parameter of n elements, a contiguous uint8 tensor of
``segment_size(n)`` bytes. A ``sign_votes`` buffer is a (workers, segment_size(n)) uint8
view of the gathered bytes, its bytes contiguous within a row and rows ``stride`` bytes
apart; the kernel takes the worker count and the stride as arguments, so every parameter
of one launch must share them. ``check_extent`` asserts that the strided extent lies in
the tensor's storage, so the kernel's last read is inside the gathered bytes.
"""
from __future__ import annotations

import torch

from ..compiler.packed_signs import SIGN_BITS, SIGN_VOTES, segment_size
from .raw_memory import check_extent, refuse_wrapped


def check_packed(name: str, dtype: str, tensors, numels, device: torch.device, labels,
                 backend: str) -> tuple[int, int] | None:
    """Raise naming the tensor unless ``tensors`` (one per parameter, of ``numels``
    elements) are such buffers on ``device``; returns (workers, row stride) of a
    ``sign_votes`` column, None for a ``sign_bits`` one."""
    assert dtype in (SIGN_BITS, SIGN_VOTES), dtype
    comm = None
    for j, t in enumerate(tensors):
        what = f"{backend} backend: {dtype} buffer {name!r} of {labels[j]}"
        refuse_wrapped(t, what, backend)
        want = (segment_size(numels[j]),)
        if t.dtype != torch.uint8 or t.device != device:
            raise TypeError(f"{what} is {t.dtype} on {t.device}; the kernel needs uint8 on "
                            f"{device}")
        if dtype == SIGN_BITS:
            if tuple(t.shape) != want or not t.is_contiguous():
                raise ValueError(f"{what} has shape {tuple(t.shape)}, stride {t.stride()}; "
                                 f"the kernel writes {want[0]} contiguous bytes")
        else:
            if t.dim() != 2 or t.shape[1] != want[0] or t.shape[0] < 1 or t.stride(1) != 1:
                raise ValueError(f"{what} has shape {tuple(t.shape)}, stride {t.stride()}; "
                                 f"the kernel reads (workers, {want[0]}) bytes, contiguous "
                                 "within a row")
            found = (t.shape[0], t.stride(0))
            if comm is not None and found != comm:
                raise ValueError(f"{what}: {found} (workers, row stride) where the launch "
                                 f"has {comm}")
            comm = found
        check_extent(t, what, backend)
    return comm
