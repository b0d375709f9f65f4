"""The kernel ABI: what a generated kernel and its launcher agree on, whatever the backend.

* the tensors a plan's kernels touch, in address-table order (``tensor_refs``), and each
  one's storage dtype for a parameter dtype (``storage_dtypes``);
* how each written narrow tensor is rounded (``roundings``), and which stochastic ones
  the launcher seeds (``launcher_seeded``; the others draw from the plan's stream,
  compiler/rounding.py);
* the generated kernel's name (``kernel_name``);
* where finished reduction results reach the kernels (``result_layout``: a per-tensor
  table of scalars and a table of row/column vectors) and how a reduce stage's partials
  are grouped (``partial_groups``).

Printers and launchers both read these; neither re-derives them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Collection

from .errors import CompileError
from .packed_signs import PACKED
from .plan import (KernelPlan, ReduceOp, ReduceStage, ResultKind, Rounding, Scope, StorageDtype,
                   TensorRef)


def tensor_refs(plan: KernelPlan) -> list[TensorRef]:
    """Every tensor the kernels touch (any stage), in a fixed order: p, g, then states."""
    by_name = {r.name: r for stage in plan.reduce_stages for r in stage.loads}
    by_name.update({r.name: r for r in plan.loads})
    by_name.update({r.name: r for r, _ in plan.stores})
    return [by_name[n] for n in ["p", "g", *plan.states] if n in by_name]


def kernel_slots(plan: KernelPlan) -> list[str]:
    """The names of ``tensor_refs``: the rows of the launcher's address table."""
    return [r.name for r in tensor_refs(plan)]


# the storage dtypes each compiled backend's kernels load and store (torch: any)
STORAGE_DTYPES = {"numba": ("bfloat16", "float16", "float32", "float64", *PACKED),
                  "triton": ("bfloat16", "float16", "float32", *PACKED)}


def storage_dtypes(plan: KernelPlan, param_dtype: str, backend: str) -> dict[str, str]:
    """Each touched tensor's storage dtype (a state's declared one, else the parameter's),
    as a plain string; a dtype the backend cannot store is refused, naming tensor and
    backend."""
    supported = STORAGE_DTYPES[backend]
    out = {}
    for ref in tensor_refs(plan):
        dtype = str(ref.dtype or param_dtype)
        if dtype not in supported:
            raise CompileError(f"rule {plan.rule_name!r}: tensor {ref.name!r} is stored as "
                               f"{dtype}; the {backend} backend supports {sorted(supported)} "
                               "(use backend='torch')")
        out[ref.name] = dtype
    return out


def roundings(plan: KernelPlan, dtypes: dict[str, str] | None,
              stochastic: Collection[str] = ()) -> dict[str, Rounding]:
    """How each written tensor is rounded when stored: the one answer every printer and
    launcher reads.

    Stochastically where the plan marks the store (the storage options ``rounding`` /
    ``param_rounding="stochastic"``, see compiler/rounding.py) and the tensor is 16-bit
    (a float32 or float64 store is exact: the mark changes nothing), and where a launcher
    asks for it (``stochastic``: the triton launcher's own option, written bfloat16
    tensors only); to nearest even otherwise. ``dtypes`` None: the dtypes are known only
    when the kernel runs (the torch backend), so every marked store is stochastic there
    and the generated code decides per tensor.
    """
    written = {r.name: r for r, _ in plan.stores}
    for name in sorted(stochastic):
        if name not in written or dtypes is None or dtypes[name] != "bfloat16":
            raise CompileError(f"rule {plan.rule_name!r}: stochastic rounding asked for "
                               f"{name!r}, which is not a written bfloat16 tensor here "
                               f"(written: {sorted((n, (dtypes or {}).get(n)) for n in written)})")

    def rounds_stochastically(ref: TensorRef) -> bool:
        if ref.name in stochastic:
            return True
        return ref.rounding == Rounding.STOCHASTIC and (
            dtypes is None or StorageDtype(dtypes[ref.name]).half)

    return {name: Rounding.STOCHASTIC if rounds_stochastically(ref) else Rounding.NEAREST_EVEN
            for name, ref in sorted(written.items())}


def launcher_seeded(plan: KernelPlan, rounding: dict[str, Rounding]) -> tuple[str, ...]:
    """The stochastically rounded tensors whose noise the launcher seeds, one
    ``seed_<name>`` kernel argument each, in this order: those the plan does not mark (a
    marked store draws from the plan's own stream, seeded by its run-time scalars)."""
    marked = {r.name for r, _ in plan.stores if r.rounding == Rounding.STOCHASTIC}
    return tuple(sorted(n for n, r in rounding.items()
                        if r == Rounding.STOCHASTIC and n not in marked))


def kernel_name(plan: KernelPlan, *variant: str) -> str:
    """A name unique per plan and variant (parameter dtype, rounding, flavour): Numba's
    on-disk cache is keyed by the function's name, and Triton's by its source."""
    key = "|".join([plan.fingerprint(), *variant])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(c if c.isascii() and c.isalnum() else "_" for c in plan.rule_name.lower())
    return f"optforge_{safe}_{digest}"


def result_layout(plan: KernelPlan, shapes_known: bool) -> tuple[list[int], list[int]]:
    """Positions in ``plan.reductions`` of the results passed as the per-tensor scalar
    table (its columns, in order) and as row/column vectors (table rows, in order).
    ``shapes_known``: the kernels read numel/ndim over a tensor, row or column from their
    shape table, so those are in neither."""
    scalars, vectors = [], []
    for i, r in enumerate(plan.reductions):
        if shapes_known and r.from_shape:
            continue
        (scalars if r.result_kind == ResultKind.SCALAR else vectors).append(i)
    return scalars, vectors


@dataclass(frozen=True)
class PartialGroups:
    """A reduce stage's reductions by the partials they write (shape-only ones write
    none): one per tensor (tensor and group scopes), per row segment, per column."""

    tensor: list[ReduceOp]
    row: list[ReduceOp]
    col: list[ReduceOp]

    @property
    def by_rows(self) -> bool:
        return bool(self.row or self.col)


def partial_groups(stage: ReduceStage) -> PartialGroups:
    ops = [r for r in stage.reductions if not r.op.from_shape]
    return PartialGroups([r for r in ops if r.scope in (Scope.TENSOR, Scope.GROUP)],
                         [r for r in ops if r.scope == Scope.ROW],
                         [r for r in ops if r.scope == Scope.COL])
