"""What a launcher that hands raw addresses to a kernel (numba, triton) must know is true.

Such a kernel gets ``data_ptr()`` and a length and trusts them. That is safe only when
both come from one tensor that owns the memory they describe:

* a tensor subclass with a ``__torch_dispatch__`` of its own (DTensor from FSDP2's
  ``fully_shard``, fake, functional or quantized tensors) is a wrapper: its ``numel()``
  and shape are the logical tensor's (a DTensor's are the *global* ones) while
  ``data_ptr()`` points at whatever it wraps (the local shard). Handing that pair to a
  kernel wrote out of bounds (issue 17: a segfault under FSDP2). Such tensors are refused.
  Subclasses that only add ``__torch_function__`` behaviour (``nn.Parameter`` and user
  subclasses of it) are their own storage and are fine.
* the elements a kernel touches, ``storage_offset`` to the last strided element, must lie
  inside the tensor's own storage, and ``data_ptr()`` must be that storage's address plus
  the offset. torch keeps both true for plain tensors; they are asserted here so that no
  future code path (a new subclass, a resized storage) can break them silently.
"""
from __future__ import annotations

import numpy as np
import torch

_PLAIN_DISPATCH = torch._C._disabled_torch_dispatch_impl


class UnsupportedTensorError(TypeError):
    """A tensor a raw-memory launcher cannot run (a wrapper subclass)."""


def is_raw(t: torch.Tensor) -> bool:
    """True when ``t``'s data_ptr/numel/strides describe memory it owns (no dispatch of its
    own; ``type(t).__torch_dispatch__`` is torch's disabled default)."""
    return type(t).__torch_dispatch__ is _PLAIN_DISPATCH


def refuse_wrapped(t: torch.Tensor, what: str, backend: str) -> None:
    """Raise naming ``what`` if ``t`` is a wrapper subclass (DTensor, ...)."""
    if not is_raw(t):
        raise UnsupportedTensorError(
            f"{backend} backend: {what} is a {type(t).__module__}.{type(t).__name__}, a "
            "tensor subclass with its own dispatch (an FSDP2/DTensor shard, a fake or "
            "quantized tensor): its data_ptr() and numel() need not describe one buffer, so "
            "this backend cannot run it; use backend='torch' (torch operations dispatch "
            "through the subclass)")


def check_extent(t: torch.Tensor, what: str, backend: str) -> None:
    """Assert that the pointer and the strided extent a kernel uses lie in ``t``'s storage."""
    if t.numel() == 0:
        return
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    storage = t.untyped_storage()
    size = t.element_size()
    end = (t.storage_offset() + span) * size
    if t.data_ptr() != storage.data_ptr() + t.storage_offset() * size or \
            end > storage.nbytes():
        raise AssertionError(
            f"{backend} backend: {what} (shape {tuple(t.shape)}, stride {t.stride()}, "
            f"offset {t.storage_offset()}) needs bytes up to {end} of a storage of "
            f"{storage.nbytes()} bytes at {storage.data_ptr():#x}, data_ptr "
            f"{t.data_ptr():#x}: pointer and length disagree; refusing to launch")


def check_raw(t: torch.Tensor, what: str, backend: str) -> None:
    refuse_wrapped(t, what, backend)
    check_extent(t, what, backend)


class CheckedAddresses:
    """Remembers the last address table whose tensors passed ``check_raw``: the full check
    (~0.5 us a tensor) runs only when an address or a size changes, as the triton layout
    does, not on every step of a 200-tensor bucket. The table's int64 array, which the
    kernel reads, is kept with it and handed out again while the key is the same. (One
    tuple, replaced whole: launchers are shared by optimizers stepping in other threads.)"""

    def __init__(self):
        self._last: tuple | None = None  # (key, its int64 array or None)

    def check(self, key, named_tensors, backend: str) -> None:
        """``key``: the addresses and sizes; ``named_tensors``: (what, tensor) pairs, or a
        function returning them (called only when the key changed)."""
        last = self._last
        if last is not None and last[0] == key:
            return
        for what, t in (named_tensors() if callable(named_tensors) else named_tensors):
            check_raw(t, what, backend)
        self._last = (key, None)

    def table(self, key, addresses: list, named_tensors, backend: str,
              shape: tuple | None = None) -> np.ndarray:
        """``check``, then ``addresses`` (part of the key) as the kernel's int64 array,
        reshaped to ``shape`` when given."""
        last = self._last
        if last is not None and last[1] is not None and last[0] == key:
            return last[1]
        self.check(key, named_tensors, backend)
        array = np.array(addresses, dtype=np.int64)
        if shape is not None:
            array = array.reshape(shape)
        self._last = (key, array)
        return array


def dense_layout(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: the elements fill ``numel`` slots of memory exactly
    (contiguous, or one permutation of it such as channels_last)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True
