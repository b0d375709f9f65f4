"""The numba launcher of plans with 8-bit states (compiler/printers/numba_quant.py).

The same multi-tensor scheme as ``launcher.py`` (one kernel call per bucket over an
address table and a block table, blocks of ``BLOCK`` elements: a multiple of every
quantization block, so no quantization block straddles two prange blocks), with one
more address row per 8-bit state: its scales, ``fmt.scale_offset(numel)`` bytes into the
packed state. Every tensor is checked (device, dtype, size, contiguity, raw memory)
before the first kernel of a step.
"""
from __future__ import annotations

import numpy as np
import torch

from ...compiler.abi import kernel_slots, storage_dtypes
from ...compiler.codegen import source as generated_source
from ...compiler.quant_plan import check_quantizable, float32_plan
from ..raw_memory import CheckedAddresses, refuse_wrapped
from .launcher import _DTYPE_NAMES, BLOCK, _launch, _what, blocks_for, kernel_module


class QuantNumbaLauncher:
    checks_tensors = True

    def __init__(self, plan):
        self.plan = plan
        self.formats = check_quantizable(plan, "numba")
        self.slots = kernel_slots(plan)
        self.source = generated_source(plan, "numba", param_dtype="float32")
        self._kernels: dict[str, object] = {}
        self._checked = CheckedAddresses()

    def kernel(self, param_dtype: str):
        return kernel_module(self.plan, param_dtype, self._kernels)

    def check(self, params, grads, states, labels=None):
        return self._tables(params, grads, states, labels) if params else None

    def _tables(self, params, grads, states, labels=None):
        dtype = _DTYPE_NAMES.get(params[0].dtype)
        if dtype is None:
            raise TypeError(f"numba backend: parameters of dtype {params[0].dtype} are not "
                            f"supported (supported: {list(_DTYPE_NAMES.values())})")
        storage = storage_dtypes(float32_plan(self.plan), dtype, "numba")
        columns = {"p": params, "g": grads, **dict(zip(self.plan.states, states))}
        labels = labels or [f"parameter {j}" for j in range(len(params))]
        table, named = [], []
        for name in self.slots:
            for j, t in enumerate(columns[name]):
                self._check(name, t, params[j], storage[name], labels[j])
            table.append([t.data_ptr() for t in columns[name]])
            named += [(_what(name, labels[j]), t) for j, t in enumerate(columns[name])]
        for name, fmt in self.formats.items():
            table.append([t.data_ptr() + fmt.scale_offset(p.numel())
                          for t, p in zip(columns[name], params)])
        numels = tuple(p.numel() for p in params)
        self._checked.check((numels, table), named, "numba")
        return dtype, np.array(table, dtype=np.int64), blocks_for(numels, BLOCK)

    def _check(self, name, t, p, dtype, label) -> None:
        what = _what(name, label)
        refuse_wrapped(t, what, "numba")
        fmt = self.formats.get(name)
        want = (torch.uint8, (fmt.packed_bytes(p.numel()),)) if fmt else (
            getattr(torch, dtype), tuple(p.shape))
        if t.device.type != "cpu" or (t.dtype, tuple(t.shape)) != want \
                or not t.is_contiguous() or not p.is_contiguous():
            raise ValueError(f"numba backend: {what} is {t.dtype} {tuple(t.shape)} on "
                             f"{t.device}; the 8-bit kernel needs contiguous CPU tensors, "
                             f"this one {want[0]} {want[1]}")

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        if not params:
            return
        dtype, table, blocks = prepared or self._tables(params, grads, states)
        module = self.kernel(dtype)
        _launch(module, module.kernel, (table, blocks, np.array(scalars, dtype=np.float64)),
                sum(p.numel() for p in params))
