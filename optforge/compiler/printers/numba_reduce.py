"""Prints a multi-stage plan for the numba backend: one prange kernel per reduce stage,
plus the elementwise kernel reading the finished results.

Kernel arguments (all kernels): ``addresses, blocks, scalars`` as for elementwise plans,
``shapes`` (per tensor: numel, rows, row length, ndim), ``rs`` (finished scalar results,
one row per tensor) and ``raddr`` (addresses of finished row/column result vectors); the
reduce kernels also take ``seg_base`` (first row segment of each block), ``col_base``
(per block: offset into ``out_col`` and whether the tensor's rows are at least a block
long) and the outputs ``out_t``, ``out_seg`` and ``out_col`` (see the launcher).

A kernel that uses row or column values, or reduces over rows or columns, walks each
block in *row segments* (the elements of one block inside one row): row values are
then constant over a segment and column values are a contiguous slice. Otherwise a
block is one run, as in the elementwise kernels.
"""
from __future__ import annotations

from ..abi import PartialGroups, kernel_name, partial_groups, roundings, storage_dtypes
from ..plan import KernelPlan, ReduceKind, ReduceOp
from ..scope_use import elementwise_exprs, stage_exprs
from ..templates import render
from .numba import _NP, STORAGE, NumbaPrinter, compute_dtype, noise_lines
from .numba_scopes import Scopes

LANES = 16
I2, I3 = " " * 8, " " * 12


def _identity(op: str, f: str) -> str:
    return f"{f}(-np.inf)" if op == "max" else f"{f}(0.0)"


def _accumulate(op: str, target: str, value: str) -> str:
    if op == "max":
        return f"{target} = fmax({target}, {value})"
    return f"{target} += {value}"


def _first(op: str, f: str, value: str) -> str:
    """The identity combined with one value: a row of one element's finished value, the
    same bits as accumulating it (0.0 + -0.0 is 0.0)."""
    return f"fmax({_identity(op, f)}, {value})" if op == "max" else \
        f"{_identity(op, f)} + {value}"


def _fold(op: str, acc: str, lanes: int = LANES) -> str:
    """A fixed pairwise tree over the lanes: ((a0 + a1) + (a2 + a3)) + ..."""
    terms = [f"{acc}[{k}]" for k in range(lanes)]
    while len(terms) > 1:
        pairs = zip(terms[0::2], terms[1::2])
        terms = [f"fmax({a}, {b})" if op == "max" else f"({a} + {b})" for a, b in pairs]
    return terms[0]


class _Kernel:
    """Shared pieces of one kernel: scalars, tensor views, the per-element body."""

    def __init__(self, plan: KernelPlan, param_dtype: str, exprs):
        self.plan = plan
        self.ftype = compute_dtype(param_dtype)
        self.f = _NP[self.ftype]
        self.pr = NumbaPrinter(plan.rule_name, self.ftype, param_dtype)
        self.pr.element = "s + i"  # runs start ``s`` elements into the block
        self.dtypes = storage_dtypes(plan, param_dtype, "numba")
        self.slots = list(self.dtypes)
        self.scopes = Scopes(plan, self.pr, self.f, exprs)

    def flat_printer(self, e) -> str:
        """``e`` printed for an element of a block of rows of one: its row and column
        values written out where they are used (``Scopes.flat_values``), so that a
        branch not taken computes none of them (AdamP's per-row projection of a 1-D
        tensor would be one ``pow`` per element)."""
        return self.pr.doprint(e.xreplace(self.scopes.flat_values))

    def head(self, name: str, args: str) -> list[str]:
        scalars = [f"    {s.name} = {self.f}(scalars[{k}])"
                   for k, s in enumerate(self.plan.scalar_args)]
        return ["", "", "@njit_cached(parallel=True, fastmath=False, nogil=True)",
                f"def {name}(addresses, blocks, scalars, shapes, rs, raddr{args}):", *scalars,
                "    for b in prange(blocks.shape[0]):", "        j = blocks[b, 0]",
                "        lo = blocks[b, 1]", "        n = blocks[b, 2] - lo",
                *self.scopes.block_lines("        ")]

    def views(self, refs) -> list[str]:
        """The block's slice of each tensor, as 1-D arrays from offset 0 (``A_x``)."""
        out = []
        for ref in refs:
            ptr, size, _, _ = STORAGE[self.dtypes[ref.name]]
            k = self.slots.index(ref.name)
            out.append(f"A_{ref.name} = carray({ptr}(addresses[{k}, j] + {size} * lo), n)")
        return out

    def loads(self, loads, indent: str) -> list[str]:
        return [f"{indent}{self.pr.load(r.name, self.dtypes[r.name])}" for r in loads]

    def runs(self, refs, body_at, per_row: bool, flat_at=None) -> list[str]:
        """The block's runs: one (``s = 0, m = n``), or one per row segment; in each,
        ``a_x`` is the run's slice of tensor x, starting at index 0 (vectorizes).

        With rows, a tensor whose rows hold one element (a 1-D bias or norm weight: its
        ``(shape[0], -1)`` view has one column) is one run too, printed by ``flat_at``:
        its element i is row ``lo + i`` and column 0, so row values are read per element
        and no loop turns per row (a segment per element cost 10-30x the step)."""
        views = [I2 + line for line in self.views(refs)]
        whole = ["s = 0", "m = n", *[f"a_{r.name} = A_{r.name}" for r in refs]]
        if not per_row:
            return [*views, *[I2 + line for line in whole], *body_at(I2)]
        i4 = I3 + "    "
        return [*views, f"{I2}L = shapes[j, 2]", f"{I2}if L == 1:",
                *[I3 + line for line in whole], *flat_at(I3), f"{I2}else:",
                f"{I3}s = 0", f"{I3}r = lo // L",
                f"{I3}while s < n:", f"{i4}e = min(n, (r + 1) * L - lo)", f"{i4}m = e - s",
                f"{i4}c0 = lo + s - r * L", *self.scopes.segment_lines(i4),
                *[f"{i4}a_{r.name} = A_{r.name}[s:e]" for r in refs], *body_at(i4),
                f"{i4}s = e", f"{i4}r += 1"]


def _elementwise(plan: KernelPlan, param_dtype: str) -> list[str]:
    k = _Kernel(plan, param_dtype, elementwise_exprs(plan))
    refs = {r.name: r for r in plan.loads} | {r.name: r for r, _ in plan.stores}
    touched = [refs[n] for n in k.slots if n in refs]
    rounding = roundings(plan, k.dtypes)

    def body(indent, flat=False):
        inner = indent + "    "
        scopes = k.scopes.flat_lines(inner) if flat else k.scopes.element_lines(inner)
        show = k.flat_printer if flat else k.pr.doprint
        lines = [*scopes, *k.loads(plan.loads, inner)]
        lines += [f"{inner}{s.name} = {show(e)}" for s, e in plan.temps]
        lines += [inner + k.pr.store(r.name, k.dtypes[r.name], show(e),
                                     rounding=rounding[r.name]) for r, e in plan.stores]
        return [f"{indent}for i in range(m):", *lines]

    return (k.head(kernel_name(plan, param_dtype), "") + noise_lines(plan, rounding, I2)
            + k.runs(touched, body, k.scopes.per_row, lambda indent: body(indent, True)))


def _reduce(plan: KernelPlan, param_dtype: str, index: int) -> list[str]:
    stage = plan.reduce_stages[index]
    k = _Kernel(plan, param_dtype, stage_exprs(plan, index))
    groups = partial_groups(stage)
    per_row = k.scopes.per_row or groups.by_rows
    name = f"{kernel_name(plan, param_dtype)}_r{index}"
    if not per_row and groups.tensor and all(r.op != ReduceKind.MAX for r in groups.tensor) \
            and _vectorizable(k, stage, groups.tensor):
        return _summing_reduce(k, stage, groups.tensor, name)
    lines = k.head(name, ", seg_base, col_base, out_t, out_seg, out_col")
    lines += [f"{I2}t{q} = np.full(LANES, {_identity(r.op, k.f)}, {k.f})"
              for q, r in enumerate(groups.tensor)]
    lines += [f"{I2}w{q} = np.empty(LANES, {k.f})" for q in range(len(groups.row))]
    if groups.row:
        lines.append(f"{I2}seg = seg_base[b]")
    laned = _LanedBody(k, stage, groups)
    lines += k.runs(stage.loads, laned.body, per_row, laned.flat)
    return lines + [f"{I2}out_t[{q}, b] = {_fold(r.op, f't{q}')}"
                    for q, r in enumerate(groups.tensor)]


class _LanedBody:
    """The body of a laned reduce kernel over one run: each element's values accumulate
    in lane ``i % LANES`` (tensor and row reductions) or straight into the column
    partials; row lanes are folded at the end of each row segment."""

    def __init__(self, k: _Kernel, stage, groups: PartialGroups):
        self.k, self.stage, self.g = k, stage, groups

    def element(self, inner: str, lane: str, short: bool = False,
                flat: bool = False) -> list[str]:
        k, g = self.k, self.g
        scopes = k.scopes.flat_lines(inner) if flat else k.scopes.element_lines(inner)
        show = k.flat_printer if flat else k.pr.doprint
        out = [*scopes, *k.loads(self.stage.loads, inner)]
        out += [f"{inner}{s.name} = {show(e)}" for s, e in self.stage.temps]
        targets = [(r, f"t{q}[{lane}]") for q, r in enumerate(g.tensor)]
        if not flat:
            targets += [(r, f"u{q}" if short else f"w{q}[{lane}]") for q, r in enumerate(g.row)]
        targets += [(r, f"c{q}[{lane}]" if flat else f"out_col[{q}, cb + i]")
                    for q, r in enumerate(g.col)]
        for r, target in targets:
            out += [f"{inner}x = {_value(k, r, show)}", inner + _accumulate(r.op, target, "x")]
        if flat:  # a row of one element: its row's value, from the identity as a row's is
            out += [f"{inner}out_seg[{q}, seg + i] = {_first(r.op, k.f, _value(k, r, show))}"
                    for q, r in enumerate(g.row)]
        return out

    def flat(self, indent: str) -> list[str]:
        """A block of rows of one element (see ``_Kernel.runs``): element i is row segment
        ``seg + i``, written as its row's partial; tensor values accumulate in lane
        i % LANES, the block's one column in lanes too, folded into its partial."""
        inner, f = indent + "        ", self.k.f
        out = [f"{indent}c{q} = np.full(LANES, {_identity(r.op, f)}, {f})"
               for q, r in enumerate(self.g.col)]
        out += [f"{indent}nf = m - m % LANES", f"{indent}for i0 in range(0, nf, LANES):",
                f"{indent}    for q in range(LANES):", f"{inner}i = i0 + q",
                *self.element(inner, "q", flat=True), f"{indent}for i in range(nf, m):",
                f"{indent}    q = i - nf", *self.element(indent + "    ", "q", flat=True)]
        return out + [indent + _accumulate(r.op, f"out_col[{q}, col_base[b, 0]]",
                                           _fold(r.op, f"c{q}"))
                      for q, r in enumerate(self.g.col)]

    def lanes(self, indent: str) -> list[str]:
        inner, rows, f = indent + "        ", self.g.row, self.k.f
        out = [f"{indent}for q in range(LANES):"] if rows else []
        out += [f"{indent}    w{q}[q] = {_identity(r.op, f)}" for q, r in enumerate(rows)]
        out += [f"{indent}nf = m - m % LANES", f"{indent}for i0 in range(0, nf, LANES):",
                f"{indent}    for q in range(LANES):", f"{inner}i = i0 + q",
                *self.element(inner, "q"), f"{indent}for i in range(nf, m):",
                f"{indent}    q = i - nf", *self.element(indent + "    ", "q")]
        return out + [f"{indent}out_seg[{q}, seg] = {_fold(r.op, f'w{q}')}"
                      for q, r in enumerate(rows)]

    def short(self, indent: str) -> list[str]:
        """A row segment shorter than the lanes (short rows: 1-D tensors are rows of one):
        row values accumulate in one scalar each, element i of the run in lane i."""
        rows = self.g.row
        out = [f"{indent}u{q} = {_identity(r.op, self.k.f)}" for q, r in enumerate(rows)]
        out += [f"{indent}for i in range(m):", f"{indent}    q = i",
                *self.element(indent + "    ", "q", short=True)]
        return out + [f"{indent}out_seg[{q}, seg] = u{q}" for q in range(len(rows))]

    def body(self, indent: str) -> list[str]:
        out = [f"{indent}cb = col_base[b, 0] + (s if col_base[b, 1] else c0)"] \
            if self.g.col else []
        if not self.g.row:
            return out + self.lanes(indent)
        return out + [f"{indent}if m < LANES:", *self.short(indent + "    "), f"{indent}else:",
                      *self.lanes(indent + "    "), f"{indent}seg += 1"]


def _value(k: _Kernel, r: ReduceOp, show=None) -> str:
    """The per-element value a reduction accumulates (nonfinite: 1 where x is NaN/Inf);
    ``show`` prints expressions (``k.flat_printer`` in a block of rows of one)."""
    show = show or k.pr.doprint
    if r.op == ReduceKind.NONFINITE:
        x = show(r.expr)
        return f"({k.f}(0.0) if ({x} - {x}) == {k.f}(0.0) else {k.f}(1.0))"
    return show(r.expr)


# Calls LLVM cannot vectorize without a vector math library; with one of them in the
# values the loop stays scalar, and one scalar accumulator sums a whole block in
# sequence: less accurate than 16 lanes (exponentiated gradient's normalizer over 33K
# elements drifted to 3.5e-6 relative in 20 steps), so such stages keep the lanes.
_SCALAR_CALLS = ("np.exp(", "np.log(", "np.power(")


def _vectorizable(k: _Kernel, stage, tensor_ops: list[ReduceOp]) -> bool:
    code = [k.pr.doprint(e) for _, e in stage.temps] + [_value(k, r) for r in tensor_ops]
    return not any(call in line for line in code for call in _SCALAR_CALLS)


def _summing_reduce(k: _Kernel, stage, tensor_ops: list[ReduceOp], name: str) -> list[str]:
    """A reduce stage of sums only, over whole tensors or the group (the common case:
    norms, dots, global clipping): one scalar accumulator per reduction, which LLVM
    vectorizes when its adds may be reassociated. Three functions keep that freedom to
    the adds alone: the prange kernel is strict (it computes the scope values of earlier
    stages exactly as the elementwise kernel does) and hands each block to
    ``<name>_acc``, compiled with ``fastmath={'reassoc'}``, whose loop takes each
    element's values from ``<name>_x``, compiled strict and inlined by LLVM (inlined
    instructions keep their own flags). The accumulation order is then the compiled
    code's (its vector width and interleave on this CPU) and blocks are fixed, so the same
    inputs give the same bits whatever the thread count. Both helpers use numpy's error
    model, as prange bodies do (x / 0 is inf or nan, and no per-division check blocks
    vectorization). Measured on the 2-core EPYC, ||g||^2 over 1M float32: 16 lanes in an
    array 105 us, this 22 us."""
    exprs = [e for _, e in stage.temps] + [r.expr for r in tensor_ops]
    own = {t for t, _ in stage.temps}
    free = sorted({k.pr.doprint(x) for e in exprs for x in e.free_symbols if x not in own})
    loaded = {f"v_{r.name}" for r in stage.loads}
    values = ", ".join(free)
    outer = [a for a in free if a not in loaded]  # scalars and scope values of the block
    views = [f"a_{r.name}" for r in stage.loads]
    acc_args = ", ".join(["n", *views, *outer])
    accs = [f"acc{q}" for q in range(len(tensor_ops))]
    strict = "@njit_cached(fastmath=False, nogil=True, error_model='numpy')"
    lines = ["", "", strict, f"def {name}_x({values}):",
             *[f"    {t.name} = {k.pr.doprint(e)}" for t, e in stage.temps],
             f"    return ({''.join(_value(k, r) + ', ' for r in tensor_ops)})"]
    lines += ["", "", "@njit_cached(fastmath={'reassoc'}, nogil=True, error_model='numpy')",
              f"def {name}_acc({acc_args}):", *[f"    {a} = {k.f}(0.0)" for a in accs],
              "    for i in range(n):", *k.loads(stage.loads, " " * 8),
              f"        {''.join(f'x{q}, ' for q in range(len(accs)))}= {name}_x({values})",
              *[f"        {a} += {k.f}(x{q})" for q, a in enumerate(accs)],
              f"    return ({''.join(a + ', ' for a in accs)})"]
    lines += k.head(name, ", seg_base, col_base, out_t, out_seg, out_col")
    lines += [f"{I2}{line}" for line in k.views(stage.loads)]
    call_args = ", ".join(["n", *[f"A_{r.name}" for r in stage.loads], *outer])
    lines.append(f"{I2}{''.join(a + ', ' for a in accs)}= {name}_acc({call_args})")
    lines += [f"{I2}out_t[{q}, b] = {a}" for q, a in enumerate(accs)]
    return lines


def stages_source(plan: KernelPlan, param_dtype: str) -> str:
    """A module defining ``kernel`` (the elementwise stage) and ``REDUCE_STAGES``."""
    dtypes = storage_dtypes(plan, param_dtype, "numba")
    slots = list(dtypes)
    kernels = _elementwise(plan, param_dtype)
    for index in range(len(plan.reduce_stages)):
        kernels += _reduce(plan, param_dtype, index)
    name = kernel_name(plan, param_dtype)
    stages = "".join(f"{name}_r{k}, " for k in range(len(plan.reduce_stages)))
    kernels += ["", "", f"kernel = {name}", f"REDUCE_STAGES = ({stages})", ""]
    return render("numba_stages.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  param_dtype=param_dtype, compute_dtype=compute_dtype(param_dtype),
                  storage=", ".join(f"{n}={d}" for n, d in dtypes.items()),
                  slots="".join(f"{n!r}, " for n in slots),
                  storage_tuple="".join(f"{dtypes[n]!r}, " for n in slots),
                  n_scalars=str(len(plan.scalar_args)), lanes=str(LANES),
                  kernels="\n".join(kernels))

