"""Between the reduce stage and the elementwise stage: finish each reduction.

Backends return one partial result per tensor and reduction: a 0-dim tensor for
``tensor`` and ``group`` scopes, a vector for ``row`` / ``col``. Here ``group``
partials are combined over every tensor of the param group (whatever their device
or dtype bucket), or taken from the optimizer-wide total (``over="optimizer"``,
see runtime/reduce_stage.py), and every value is shaped to broadcast against its parameter, so
the elementwise stage reads it like any other operand.
"""
from __future__ import annotations

import torch

from ..compiler.plan import ReduceOp


def combine(op: str, values: list[torch.Tensor]) -> torch.Tensor:
    """One total of partial results: their maximum for ``max``, else their sum."""
    device = values[0].device
    stacked = torch.stack([v.to(device=device, dtype=torch.float32) for v in values])
    # sum in a fixed order (the group's parameter order): the same bits every run
    return stacked.amax() if op == "max" else stacked.sum()


def _broadcastable(value: torch.Tensor, scope: str, param: torch.Tensor) -> torch.Tensor:
    if value.dim() == 0:  # one value for the whole tensor (numel/ndim over rows or columns)
        return value
    if scope == "row":
        return value.view((-1,) + (1,) * max(param.dim() - 1, 0)) if param.dim() else \
            value.view(())
    if scope == "col":
        return value.view(param.shape[1:])
    return value


SHAPE_OPS = ("numel", "ndim")


def from_shapes(ops: list[ReduceOp], params, dtype_of) -> list[tuple] | None:
    """A stage whose reductions only count elements or dimensions (Muon's fan-in/fan-out
    scale): each tensor's partials straight from its shape, with no kernel and no pass
    over memory; None when the stage reads data."""
    if not all(r.op in SHAPE_OPS for r in ops):
        return None
    kinds = tuple((r.op, r.scope) for r in ops)
    out = []
    for p in params:
        key = (kinds, tuple(p.shape), p.dtype, p.device)
        found = _SHAPE_VALUES.get(key)
        if found is None:  # constants: made once per shape, not on every step
            if len(_SHAPE_VALUES) > 1024:
                _SHAPE_VALUES.clear()
            rows = p.shape[0] if p.dim() else 1
            value = {"tensor": p.numel(), "group": p.numel(),
                     "row": p.numel() // max(rows, 1), "col": rows}
            found = _SHAPE_VALUES[key] = tuple(
                torch.tensor(float(p.dim() if op == "ndim" else value[scope]),
                             dtype=dtype_of(p.dtype), device=p.device) for op, scope in kinds)
        out.append(found)
    return out


_SHAPE_VALUES: dict = {}  # (ops, shape, dtype, device) -> the stage's partials


def finish(ops: list[ReduceOp], partials: list[tuple[torch.Tensor, tuple]],
           spanning: dict | None = None) -> dict:
    """``[(param, its partials)]`` of one reduce stage -> ``{param: finished values}``.
    ``spanning``: {reduction index: total} for reductions over more than the group
    (``over="optimizer"``), totalled by the caller over every group."""
    totals = dict(spanning or {})
    for i, r in enumerate(ops):
        if r.scope == "group" and i not in totals:
            totals[i] = combine(r.op, [parts[i] for _, parts in partials])
    out = {}
    for p, parts in partials:
        values = []
        for i, r in enumerate(ops):
            v = totals[i].to(device=parts[i].device, dtype=parts[i].dtype) if i in totals \
                else parts[i]
            values.append(_broadcastable(v, r.scope, p))
        out[p] = tuple(values)
    return out
