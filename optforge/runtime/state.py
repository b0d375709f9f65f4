"""Optimizer state tensors: created from the rule's state declarations (checked on load
by ``checkpoint``)."""
from __future__ import annotations

from dataclasses import replace

import torch

from ..compiler.printers.torch import TorchPrinter
from ..compiler.quant_format import parse
from ..dsl.symbols import GradSymbol, ParamSymbol, StateDecl
from ..kernels.quantized import pack

STORAGE_DTYPES = {"float32": torch.float32, "float64": torch.float64,
                  "bfloat16": torch.bfloat16, "float16": torch.float16}


def storage_dtype(decl: StateDecl, param: torch.Tensor) -> torch.dtype:
    if parse(decl.dtype):
        return torch.uint8  # 8-bit block-wise: codes and scales packed (quant_format.py)
    return param.dtype if decl.dtype is None else STORAGE_DTYPES[decl.dtype]


def matrix_shape(decl: StateDecl, param: torch.Tensor) -> tuple[int, int]:
    """A matrix state's shape: its "rows" / "cols" are those of the parameter's 2-D view."""
    rows = param.shape[0] if param.dim() else 1
    dims = {"rows": rows, "cols": param.numel() // max(rows, 1), 1: 1}
    return tuple(dims[d] for d in decl.shape)


def scoped_shape(decl: StateDecl, param: torch.Tensor) -> tuple[int, ...]:
    """A scoped state's shape: 0-d for one value per tensor, group or optimizer (as torch
    keeps NAdam's ``mu_product``); a row state ``(rows, 1, ...)`` and a column state ``(1,
    *shape[1:])`` of the parameter's ``(shape[0], -1)`` view, as torch.optim.Adafactor
    keeps ``row_var`` / ``col_var`` of a matrix: rows + cols values, broadcasting against
    the parameter."""
    if decl.scope not in ("row", "col") or param.dim() == 0:
        return ()
    if decl.scope == "row":
        return (param.shape[0],) + (1,) * (param.dim() - 1)
    return (1,) + tuple(param.shape[1:])


def state_shape(decl: StateDecl, param: torch.Tensor) -> tuple[int, ...]:
    """The shape of a stored state of ``param``: the parameter's, a matrix state's or a
    scoped state's, or an 8-bit state's packed codes and scales (one uint8 row)."""
    fmt = parse(decl.dtype)
    if fmt is not None:
        return (fmt.packed_bytes(param.numel()),)
    if decl.kind == "matrix":
        return matrix_shape(decl, param)
    if decl.kind == "scoped":
        return scoped_shape(decl, param)
    return tuple(param.shape)


def initial_value(decl: StateDecl, param: torch.Tensor, hyper_values: dict[str, float]):
    """A new state tensor shaped like ``param`` (or a matrix state's shape), filled with
    the declared initial value (times the identity for ``eye`` matrix states)."""
    fmt = parse(decl.dtype)
    if fmt is not None:  # the float32 value, packed
        if param.is_complex():  # (kernels step a complex parameter as its real view)
            raise ValueError(f"state {decl.name!r}: 8-bit states of complex parameters are "
                             "not supported; use state_dtype='bfloat16' or 'float32'")
        return pack(initial_value(replace(decl, dtype="float32"), param, hyper_values), fmt)
    dtype = storage_dtype(decl, param)
    init = decl.init.subs({s: hyper_values[s.name] for s in decl.init.free_symbols
                           if s.name in hyper_values})
    if decl.kind == "scoped":
        return torch.full(scoped_shape(decl, param), float(init), dtype=dtype,
                          device=param.device)
    if decl.kind == "matrix":
        shape = matrix_shape(decl, param)
        if decl.eye:
            value = float(init) * torch.eye(shape[0], dtype=dtype, device=param.device)
        else:
            value = torch.full(shape, float(init), dtype=dtype, device=param.device)
        if type(param) not in (torch.Tensor, torch.nn.Parameter):  # a DTensor: its rows
            from .shard_matrix_states import distribute_rows
            from .shards import is_sharded
            return distribute_rows(value, param) if is_sharded(param) else value
        return value
    if not any(isinstance(s, (ParamSymbol, GradSymbol)) for s in init.free_symbols):
        # a complex parameter is stepped as its real view (runtime/staging.py): both
        # components start at the value, as in torch.optim (Adagrad's initial sum)
        value = complex(float(init), float(init)) if dtype.is_complex else float(init)
        return torch.full_like(param, value, dtype=dtype, memory_format=torch.preserve_format)
    code = TorchPrinter(decl.name).doprint(init)
    value = eval(code, {"torch": torch, "v_p": param.detach(),  # noqa: S307 - our printer
                        "v_g": _first_grad(param)})
    return value.to(dtype=dtype, memory_format=torch.preserve_format).clone()


def _first_grad(param: torch.Tensor) -> torch.Tensor:
    """The gradient a state with ``init=grad()`` starts from: that of the step creating
    it. A state made without one (a checkpoint completed before a flag's first step,
    checkpoint._fill_states) starts from a zero gradient."""
    g = param.grad
    if g is None:
        return torch.zeros_like(param.detach())
    return (g.to_dense() if g.is_sparse else g).detach()


def new_state(decls: dict[str, StateDecl], param, hyper_values) -> dict:
    """torch-style state: a float32 ``step`` scalar plus one tensor per declared state."""
    state = {"step": torch.tensor(0.0, dtype=torch.float32)}
    for name, decl in decls.items():
        if decl.stored:
            state[name] = initial_value(decl, param, hyper_values)
    return state


def restore_dtypes(decls: dict[str, StateDecl], param, state: dict) -> None:
    """After a checked load: declared storage dtypes are restored, ``step`` is a tensor.

    torch casts every floating state to the parameter's dtype on load; a state
    declared bfloat16 is cast back here (exact: it was bfloat16 when saved). Old
    checkpoints (and hand-made ones) may hold ``step`` as a number.
    """
    for name, decl in decls.items():
        if decl.stored and name in state and parse(decl.dtype):
            # saved 8-bit in this format: the packed bytes, which torch's loader cast to
            # the parameter's dtype (0..255: exact in every float dtype); float values
            # of the parameter's shape: quantized now
            value, fmt = state[name], parse(decl.dtype)
            packed = value.dim() == 1 and value.numel() == fmt.packed_bytes(param.numel())
            state[name] = value.to(torch.uint8) if packed else pack(value.float(), fmt)
        elif decl.stored and name in state and state[name].dtype != storage_dtype(decl, param):
            state[name] = state[name].to(storage_dtype(decl, param))
    if not isinstance(state["step"], torch.Tensor):
        state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
