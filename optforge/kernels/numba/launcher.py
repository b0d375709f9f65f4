"""Runs a plan's generated Numba kernel over a bucket of same-dtype CPU tensors.

Multi-tensor scheme: ONE kernel call per bucket and step. The launcher passes a
table of raw addresses (``data_ptr()`` of p, g and every state, one column per
parameter) and a table of blocks (parameter index, start, stop); the kernel's
prange runs over blocks and views each slice with ``numba.carray``. Nothing is
copied or concatenated: parameters stay the user's tensors (``p.data`` is never
re-pointed) and states stay ordinary per-parameter tensors (torch checkpoints).

What was measured to choose it (2-core Xeon, AdamW float32, 1 thread to keep
the shared machine's noise out; ms per step, min of 15):
  10M elements, one ndarray-argument prange kernel (the baseline)      10.9
  pointer table, carray from the tensor start, ``range(lo, hi)``       20.7  (not vectorized)
  pointer table, carray from the block start, ``range(n)``             10.3  <- kept
  pointer table, a per-block @njit helper taking 4 carrays             20.4
and torch ``fused=True`` 13.8. Against one ndarray-argument call per tensor (arrays
prepared in advance, so that side pays no conversion), 200 tensors, median ms, both
with 2 threads on the machine at load ~4 (other sessions running):
  sizes 1k-500k (seeded, ~50M in all)   per-tensor 375    table 115
  200 x 10k                             per-tensor  28    table  10
  200 x 1k                              per-tensor  16.4  table   0.87 (serial path)
Every per-tensor call wakes the thread pool; the table wakes it once. Building the
table costs ~1 us per tensor in Python (launcher total ~0.9 ms at 200 tensors).
Blocks are BLOCK elements: small enough that 2+ threads share even one tensor
evenly, large enough that the per-block setup is invisible (block sizes 16K, 64K,
256K and 1M were within 7% of each other at 10M and 50M elements, measured with
the first, unvectorized table kernel).

Multi-stage plans: ``reduce(stage, ...)`` runs one kernel per reduce stage over the
same tables and returns each tensor's partials (the torch launcher's contract;
``reduce.py`` has the partial layout, ``stage_results.py`` the conversions), and the
elementwise kernel then takes the finished results as tables.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ...compiler.plan import KernelPlan
from ...compiler.abi import kernel_slots, partial_groups, storage_dtypes
from ...compiler.codegen import source as generated_source
from ...compiler.packed_signs import PACKED
from ..cache import load_module
from ..packed_signs import check_packed
from ..raw_memory import CheckedAddresses, dense_layout, is_raw, refuse_wrapped
from .jit import restore_threads, run_parallel, threads_for_this_call
from .reduce import Layout
from .stage_results import StageResults

BLOCK = 1 << 16
# blocks start at multiples of BLOCK: packed sign bits need whole bytes per block
assert BLOCK % 8 == 0, "numba BLOCK must be a multiple of 8 (compiler/packed_signs.py)"
# Below this many elements a step runs on the calling thread only. Waking the OpenMP
# pool costs ~10 us on an idle machine, but when the cores are busy (a test run, a
# data loader) the barrier waits for a descheduled worker: on the 2-core machine with
# a load average of ~3.5 we measured AdamW steps (median ms, 1 thread vs 2 threads)
# of 0.1 vs 14 at 1K and 33K elements, 0.52 vs 7.4 at 300K, 1.1 vs 6.8 at 1M and
# 16.6 vs 15.8 at 10M (torch fused=True: 8.1, 8.1, 16.0 at 300K, 1M, 10M). On an idle
# machine 2 threads halve a 10M step (10.3 -> ~4.2 ms), and a 256K step (~0.4 ms on
# one thread) still gains more than the wake-up costs: hence the threshold here.
PARALLEL_MIN = 1 << 18
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64",
                torch.bfloat16: "bfloat16", torch.float16: "float16"}
# the modules generated kernels import device functions from (inlined into the kernels)
_HELPERS = tuple(Path(__file__).with_name(name)
                 for name in ("helpers.py", "philox.py", "quant_helpers.py"))
_RAW_TYPES = (torch.Tensor, torch.nn.Parameter)  # raw memory, no call to is_raw needed
_NUMEL, _IS_CONTIGUOUS = torch.Tensor.numel, torch.Tensor.is_contiguous


def helpers_digest() -> str:
    """Numba's cache does not see changes in imported helpers: the module name must."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in _HELPERS)).hexdigest()[:16]


def kernel_module(plan: KernelPlan, param_dtype: str, loaded: dict):
    """The generated numba module of ``plan`` for ``param_dtype`` parameters, imported
    once into ``loaded`` (a launcher's own table)."""
    found = loaded.get(param_dtype)
    if found is None:
        source = generated_source(plan, "numba", param_dtype=param_dtype)
        source += f"\n# helpers {helpers_digest()}\n"
        found = loaded[param_dtype] = load_module(source, "numba")
    return found


def blocks_for(numels: tuple[int, ...], block: int = BLOCK) -> np.ndarray:
    """Rows (tensor index, start, stop) covering every element once; empty tensors skipped."""
    rows = [(j, lo, min(n, lo + block)) for j, n in enumerate(numels)
            for lo in range(0, n, block)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _plain(columns, numels) -> bool:
    """The common case, checked cheaply (~0.5 us a tensor; the detailed check costs ~3 us,
    which at 200 tensors x 4 slots was half of a small step): CPU, right dtype and size,
    contiguous. ``columns``: (slot name, tensors, torch dtype). The grad's shape is
    checked by the optimizer, states are made like p."""
    for _, tensors, dtype in columns:
        for t, n in zip(tensors, numels):
            if t.dtype != dtype or not t.is_cpu or t.numel() != n or not t.is_contiguous() \
                    or not (type(t) in _RAW_TYPES or is_raw(t)):
                return False
    return True


def _purge_numba_cache(module) -> None:
    """Delete Numba's index/data files of one generated module (found corrupted)."""
    path = Path(module.__file__)
    if not path.is_file():  # compiled in memory (kernels/cache.py): nothing on disk
        return
    for f in (path.parent / "__pycache__").glob(path.stem + ".*.nb[ic]"):
        f.unlink(missing_ok=True)


class NumbaLauncher:
    """Loads one kernel per parameter dtype (lazily) and calls it once per bucket."""

    # check() validates dtype, device and size of every tensor the kernels touch
    checks_tensors = True

    def __init__(self, plan: KernelPlan):
        self.plan = plan
        self.slots = kernel_slots(plan)
        self.source = generated_source(plan, "numba", param_dtype="float32")
        self._kernels: dict[str, object] = {}
        self._blocks: dict[tuple, np.ndarray] = {}
        self._layouts: dict[tuple, Layout] = {}
        self._specs: dict[str, list] = {}  # parameter dtype -> _slot_specs
        self._results = StageResults(plan)
        self._checked = CheckedAddresses()
        # row/column reductions index rows of the (shape[0], -1) view in memory order
        self._by_rows = any(partial_groups(stage).by_rows for stage in plan.reduce_stages)
        # the only columns that can hold None: buffers a matrix stage has not made yet
        self._buffers = frozenset(n for n, d in plan.states.items() if d.kind == "buffer")
        self._buffer_columns = [k for k, n in enumerate(plan.states) if n in self._buffers]

    def kernel(self, param_dtype: str):
        """The compiled dispatcher for parameters of ``param_dtype`` (imported once)."""
        return kernel_module(self.plan, param_dtype, self._kernels)

    def check(self, params, grads, states, labels=None):
        """The optimizer's check phase, before any kernel of the step: raise naming the
        tensor (by ``labels[j]``, e.g. "parameter 3 of group 1") if this bucket cannot
        run. Returns the checked tables for the launch (``prepared``), or None where a
        buffer a matrix stage has not made yet (None) leaves them to the launch."""
        if not params or self._buffer_columns and any(
                t is None for k in self._buffer_columns for t in states[k]):
            if params:
                self._tables(params, grads, states, labels)
            return None
        return self._tables(params, grads, states, labels)

    def _slot_specs(self, dtype: str) -> list[tuple]:
        """Per kernel slot, for ``dtype`` parameters: (name, where its tensors are: -2 the
        parameters, -1 the gradients, else the index into ``states``, storage dtype name,
        torch dtype or None for packed sign bits), worked out once per dtype."""
        found = self._specs.get(dtype)
        if found is None:
            storage = storage_dtypes(self.plan, dtype, "numba")
            index = {name: k for k, name in enumerate(self.plan.states)}
            found = self._specs[dtype] = [
                (name, -2 if name == "p" else -1 if name == "g" else index[name],
                 storage[name], None if storage[name] in PACKED else getattr(torch, storage[name]))
                for name in self.slots]
        return found

    def _tables(self, params, grads, states, labels=None):
        """(dtype name, address table, blocks, packed-result arguments, total elements) of
        a bucket, every tensor checked."""
        dtype = _DTYPE_NAMES.get(params[0].dtype)
        if dtype is None:
            raise TypeError(f"numba backend: parameters of dtype {params[0].dtype} are not "
                            f"supported (supported: {list(_DTYPE_NAMES.values())})")
        if labels is None:
            labels = _NUMBERED
        numels = tuple(map(_NUMEL, params))
        named, comm, plain = [], [], []
        for name, source, storage, want in self._specs.get(dtype) or self._slot_specs(dtype):
            tensors = params if source == -2 else grads if source == -1 else states[source]
            if name in self._buffers and any(t is None for t in tensors):
                continue  # check phase: a matrix buffer or a collective's result not made yet
            if want is None:  # sign bits (compiler/packed_signs.py)
                found = check_packed(name, storage, tensors, numels, params[0].device,
                                     labels, "numba")
                comm += found or ()
            else:
                plain.append((name, tensors, want))
            named.append((name, tensors))
        # a non-contiguous (e.g. channels_last) parameter: every tensor must share its
        # layout, which only the detailed check looks at
        if not (all(map(_IS_CONTIGUOUS, params)) and _plain(plain, numels)):
            for name, tensors, want in plain:
                self._check(name, tensors, params, want, labels)  # explains, or allows
        addresses = [t.data_ptr() for _, tensors in named for t in tensors]  # slot-major
        # the kernel trusts each address with its parameter's numel: assert they agree
        array = self._checked.table((numels, addresses, comm), addresses, lambda: (
            (_what(name, labels[j]), t) for name, ts in named for j, t in enumerate(ts)),
            "numba", shape=(len(named), len(params)))
        if self._by_rows:
            for j, p in enumerate(params):
                if not p.is_contiguous():
                    raise ValueError(
                        f"numba backend: {labels[j]} (shape {tuple(p.shape)}, stride "
                        f"{p.stride()}) is not contiguous, and rule {self.plan.rule_name!r} "
                        "reduces over rows or columns; make it contiguous or use "
                        "backend='torch'")
        blocks = self._blocks.get(numels)
        if blocks is None:
            if len(self._blocks) > 64:  # bounded: shapes change rarely
                self._blocks.clear()
            blocks = self._blocks[numels] = blocks_for(numels)
        # packed collective results: worker count and row stride, after the scalars
        return dtype, array, blocks, comm, sum(numels)

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        """``states`` is one list per state name (plan order), aligned with ``params``;
        ``reduced``: each parameter's finished reductions (multi-stage plans);
        ``prepared``: what ``check`` returned for these very tensors this step."""
        if not params:
            return
        dtype, table, blocks, comm, total = prepared or self._tables(params, grads, states)
        module = self._kernels.get(dtype) or self.kernel(dtype)
        args = (table, blocks, np.array([*scalars, *comm], dtype=np.float64))
        if self.plan.reduce_stages:
            layout = self._layout(params, blocks)
            args += (layout.shapes,) + self._results.tables(reduced, params, layout)
        _launch(module, module.kernel, args, total)

    def reduce(self, stage: int, params, grads, states, scalars, reduced,
               prepared=None) -> list[tuple]:
        """Reduce stage ``stage``: each tensor's partial reductions (nothing is written);
        ``reduced`` holds each tensor's finished results of the earlier stages."""
        dtype, table, blocks, _, _ = prepared or self._tables(params, grads, states)
        module = self.kernel(dtype)
        layout = self._layout(params, blocks)
        tables = self._results.tables(reduced, params, layout)
        return self._results.run_stage(stage, module, (table, blocks, np.array(
            scalars, dtype=np.float64), layout.shapes) + tables, layout, params, _launch)

    def _layout(self, params, blocks) -> Layout:
        key = tuple(tuple(p.shape) for p in params)
        found = self._layouts.get(key)
        if found is None:
            if len(self._layouts) > 64:
                self._layouts.clear()
            found = self._layouts[key] = Layout(key, blocks, BLOCK)
        return found

    def _check(self, name, tensors, params, want: torch.dtype, labels):
        """The slow path: raise naming the tensor, or accept a dense permuted layout."""
        for j, t in enumerate(tensors):
            p = params[j]
            what = _what(name, labels[j])
            refuse_wrapped(t, what, "numba")
            if t.device.type != "cpu":
                raise RuntimeError(f"numba backend: {what} is on {t.device}; "
                                   "the numba backend runs CPU tensors only")
            if t.dtype != want:
                raise TypeError(f"numba backend: {what} has dtype {t.dtype}, "
                                f"expected {want}")
            if t.shape != p.shape:
                raise ValueError(f"numba backend: {what} has shape "
                                 f"{tuple(t.shape)}, the parameter {tuple(p.shape)}")
            # Elementwise math over raw memory is right when every tensor of a parameter
            # lays its elements out the same way: contiguous, or one dense permuted layout
            # (e.g. a transposed or channels_last parameter with like-strided grad/states).
            if not (t.is_contiguous() and p.is_contiguous()) and not (
                    dense_layout(t) and t.stride() == p.stride()):
                raise ValueError(
                    f"numba backend: {what} (shape {tuple(t.shape)}, stride "
                    f"{t.stride()}) is not laid out like its parameter (stride {p.stride()}) "
                    "or not dense; make it contiguous or use backend='torch'")


class _Numbered:
    """``labels[j]`` where the caller gave none: "parameter j" (made only for errors)."""

    def __getitem__(self, j: int) -> str:
        return f"parameter {j}"


_NUMBERED = _Numbered()


def _what(name: str, label: str) -> str:
    """"parameter 3 of group 1", "gradient of parameter 3...", "state 'm' of parameter 3..."."""
    return label if name == "p" else (
        "gradient of " if name == "g" else f"state {name!r} of ") + label


def _launch(module, fn, args, total: int) -> None:
    """Call one kernel: serial below PARALLEL_MIN elements, an unreadable cache purged;
    ``jit.run_parallel`` keeps it alive across forks and threads."""
    threads = threads_for_this_call(total, PARALLEL_MIN) if total < PARALLEL_MIN else 0
    try:
        run_parallel(fn, *args)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        # Numba found its on-disk cache entry unreadable (truncated or corrupted
        # index/data file): drop it and compile afresh, once.
        if fn.signatures:
            raise
        _purge_numba_cache(module)
        run_parallel(fn, *args)
    finally:
        if threads:
            restore_threads(threads)
