"""The triton launcher of plans with 8-bit states (compiler/printers/triton_quant.py).

One launch per bucket: program ``pid`` steps ``ROWS`` whole quantization blocks of one
tensor (a [ROWS, QBLOCK] tile); the address table has a row per tensor role, then one row
per 8-bit state with its scales' address (``fmt.scale_offset(numel)`` bytes into the
packed state). No autotuning: the tile is fixed (ROWS * QBLOCK = 1024 elements when the
block allows), as the reduce stages' is. Every tensor is checked before the first kernel.
"""
from __future__ import annotations

import functools

import torch

from ...compiler.abi import kernel_slots, storage_dtypes
from ...compiler.codegen import source as generated_source
from ...compiler.quant_format import code_table, padded_midpoints
from ...compiler.quant_map import dynamic_map
from ...compiler.quant_plan import check_quantizable, float32_plan
from ..cache import load_module
from ..raw_memory import refuse_wrapped
from .available import interpreter_on
from .configs import FP_FUSION

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
TILE = 1024  # elements per program


@functools.lru_cache(maxsize=None)
def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    floats = [*dynamic_map(True), *padded_midpoints(True), *dynamic_map(False),
              *padded_midpoints(False)]
    ints = [*code_table(True)[0], *code_table(False)[0]]
    return (torch.tensor(floats, dtype=torch.float32, device=device),
            torch.tensor(ints, dtype=torch.int32, device=device))


class QuantTritonLauncher:
    checks_tensors = True

    def __init__(self, plan, stochastic=(), **_options):
        if stochastic:
            raise ValueError(f"rule {plan.rule_name!r}: the triton 8-bit kernel does not "
                             f"round {sorted(stochastic)} stochastically")
        self.plan = plan
        self.formats = check_quantizable(plan, "triton")
        self.block = next(iter(self.formats.values())).block
        self.rows = max(1, TILE // self.block)
        self.slots = kernel_slots(plan)
        self.source = generated_source(plan, "triton", param_dtype="float32",
                                       interpreted=interpreter_on())
        self._kernels: dict[str, object] = {}

    def kernel(self, dtype: str):
        if dtype not in self._kernels:
            source = generated_source(self.plan, "triton", param_dtype=dtype,
                                      interpreted=interpreter_on())
            self._kernels[dtype] = load_module(source, "triton").kernel
        return self._kernels[dtype]

    def check(self, params, grads, states, labels=None) -> None:
        if params:
            self._columns(params, grads, states, labels)

    def _columns(self, params, grads, states, labels=None) -> dict:
        dtype = _DTYPES.get(params[0].dtype)
        if dtype is None:
            raise TypeError(f"triton backend: parameters of dtype {params[0].dtype} are not "
                            f"supported by the 8-bit kernel ({sorted(_DTYPES.values())})")
        storage = storage_dtypes(float32_plan(self.plan), dtype, "triton")
        columns = {"p": params, "g": grads, **dict(zip(self.plan.states, states))}
        labels = labels or [f"parameter {j}" for j in range(len(params))]
        for name in self.slots:
            fmt = self.formats.get(name)
            for j, (t, p) in enumerate(zip(columns[name], params)):
                what = f"{name!r} of {labels[j]}"
                refuse_wrapped(t, what, "triton")
                want = (torch.uint8, (fmt.packed_bytes(p.numel()),)) if fmt else (
                    getattr(torch, storage[name]), tuple(p.shape))
                if (t.dtype, tuple(t.shape)) != want or t.device != p.device \
                        or not t.is_contiguous():
                    raise ValueError(f"triton backend: {what} is {t.dtype} {tuple(t.shape)} "
                                     f"on {t.device}; the 8-bit kernel needs contiguous "
                                     f"{want[0]} {want[1]} on {p.device}")
        return columns

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        if not params:
            return
        columns = self._columns(params, grads, states)
        device = params[0].device
        rows = [[t.data_ptr() for t in columns[name]] for name in self.slots]
        rows += [[t.data_ptr() + fmt.scale_offset(p.numel()) for t, p in
                  zip(columns[name], params)] for name, fmt in self.formats.items()]
        tile = self.rows * self.block
        starts = [(j, s) for j, p in enumerate(params) for s in range(0, p.numel(), tile)]
        if not starts:
            return
        as_tensor = functools.partial(torch.tensor, dtype=torch.int64, device=device)
        ftables, itables = _tables(device)
        self.kernel(_DTYPES[params[0].dtype])[(len(starts),)](
            as_tensor(rows), len(params), as_tensor([p.numel() for p in params]),
            as_tensor([j for j, _ in starts]), as_tensor([s for _, s in starts]),
            ftables, itables, *[float(s) for s in scalars],
            ROWS=self.rows, QBLOCK=self.block, enable_fp_fusion=FP_FUSION)
