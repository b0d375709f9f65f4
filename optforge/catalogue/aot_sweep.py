"""The AOT sweep: every catalogue rule's Triton kernels compiled for sm_90 and sm_80.

    TRITON_CACHE_DIR=$(mktemp -d) python -m optforge.catalogue.aot_sweep [--rules AdamW,Lion]

(``TRITON_INTERPRET`` unset.) For each rule (default variant) and parameter dtype it
compiles the elementwise kernel, the pre-stage kernel and every reduce kernel, plus the
rounding kernel, and prints one JSON record per kernel: registers, spills, stack,
float64 instructions, 128-bit loads/stores, and what the traffic model says they should
be. For the rules in ``PER_ELEMENT`` it also measures the full-block path's cost per
element: the kernel with its tail path emptied, compiled at 8 and 16 elements per
thread, differenced, gives SASS instructions and bytes of global loads/stores per
element with the per-program overhead removed. ``tests/kernels/test_triton_aot.py``
asserts on these records; docs/gpu.md lists the numbers.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

from ..kernels.triton import aot, configs

ARCHS = (90, 80)
DTYPES = ("float32", "bfloat16")
PER_ELEMENT = ("AdamW", "Lion", "LAMB", "AdamP", "SGDP")
BLOCK, WARPS = 2048, 8  # the heuristic config for large tensors: 8 elements per thread
REDUCE = configs.REDUCE_GPU  # reduce tiles: 1024 elements over 4 warps
_WIDTH = {"v4.b32": 16, "v4.f32": 16, "v4.u32": 16, "v2.b64": 16, "v2.b32": 8,
          "v2.f32": 8, "b64": 8, "u64": 8, "b32": 4, "f32": 4, "u32": 4, "b16": 2, "u16": 2}


def global_bytes(ptx: str, op: str) -> int:
    """Bytes moved by every ``ld.global``/``st.global`` instruction of a PTX listing."""
    total = 0
    for kind in re.findall(rf"{op}\.global(?:\.[a-z]+)*?\.((?:v[24]\.)?[bfu](?:16|32|64))\b",
                           ptx):
        total += _WIDTH[kind]
    return total


def _bytes_per_element(refs, dtypes) -> int:
    """Bytes per element the kernel moves as 128-bit vectors: packed sign bits
    (compiler/packed_signs.py) are bytes shared by 8 elements, never vectorized."""
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "sign_bits": 0, "sign_votes": 0}
    return sum(size[dtypes[r.name]] for r in refs)


def _column_gathers(plan) -> int:
    """Bytes per element an elementwise kernel reads of column results (float32, one per
    column, gathered at each element's column: Adafactor's col_var and column means)."""
    from ..compiler.plan import ReduceResult, ResultKind
    from ..compiler.scope_use import ScopeUse, elementwise_exprs
    use = ScopeUse(plan, elementwise_exprs(plan))
    return 4 * sum(1 for s, kind in use.kind.items()
                   if isinstance(s, ReduceResult) and kind == ResultKind.COL)


def rule_kernels(name: str, dtype: str):
    """(label, fn, signature, constexprs, expected load/store bytes per element or None)."""
    from ._base import REGISTRY
    from ..compiler.printers.triton import storage_dtypes, triton_source
    from ..runtime.compiled import compile_rule
    from ..kernels.cache import load_module

    spec = REGISTRY[name].rule
    plan = compile_rule(spec, spec.default_variant).plan
    for label, p in (("pre", plan.pre_plan), ("elementwise", plan)):
        if p is None:
            continue
        dtypes = storage_dtypes(p, dtype)
        source = triton_source(p, dtype, ())
        module = load_module(source, "triton")
        expect = (_bytes_per_element(p.loads, dtypes),
                  _bytes_per_element([r for r, _ in p.stores], dtypes), _column_gathers(p))
        yield (label, module.kernel, aot.elementwise_signature(p),
               {"BLOCK_SIZE": BLOCK, "ALIGN": 16}, expect, source, p)
        for k, fn in enumerate(getattr(module, "REDUCE_STAGES", ())):
            loads = _bytes_per_element(p.reduce_stages[k].loads, dtypes)
            for cols in (1, 256):
                yield (f"r{k}-cols{cols}", fn, aot.reduce_signature(p),
                       {"ROWS": REDUCE.block_size // cols, "COLS": cols, "ALIGN": 16,
                        "INDEX32": True, "COLS_DIV": 8}, (loads, 0), None, p)


def per_element(source: str, plan, fp_fusion: bool) -> dict:
    """SASS instructions, global bytes and 64-bit divisions per element on the full-block
    path (for kernels reading row results: on its one-row case, and ``two_rows_*`` /
    ``short_rows_*`` on its cases of a block across one row end / rows shorter than a
    block)."""
    if aot.ONE_ROW not in source:
        return _per_element(source, plan, fp_fusion, None)
    out = _per_element(source, plan, fp_fusion, "one_row")
    for branch in ("two_rows", "short_rows"):
        out.update({f"{branch}_{k}": v
                    for k, v in _per_element(source, plan, fp_fusion, branch).items()})
    return out


def _per_element(source: str, plan, fp_fusion: bool, branch) -> dict:
    from ..kernels.cache import load_module

    fn = load_module(aot.full_path_only(source, branch), "triton").kernel
    sig = aot.elementwise_signature(plan)
    runs = []
    for block in (1024, 2048):  # 4 warps: 8 and 16 elements per thread
        stats, ptx = aot.compile_kernel(fn, sig, {"BLOCK_SIZE": block, "ALIGN": 16}, 90, 4,
                                        sass=True, fp_fusion=fp_fusion, with_ptx=True)
        runs.append((stats.sass, global_bytes(ptx, "ld"), global_bytes(ptx, "st"),
                     stats.div64))
    (s1, l1, w1, d1), (s2, l2, w2, d2) = runs
    return {"sass_per_element": (s2 - s1) / 8, "load_bytes_per_element": (l2 - l1) / 8,
            "store_bytes_per_element": (w2 - w1) / 8, "div64_per_element": (d2 - d1) / 8}


def _row_gather_bytes(plan) -> int:
    """Bytes per element a short-row block gathers: one float32 per row result the
    elementwise stage reads (cached reads of ``rows`` floats per tensor)."""
    from ..compiler.plan import ResultKind
    from ..compiler.scope_use import ScopeUse, elementwise_exprs

    use = ScopeUse(plan, elementwise_exprs(plan))
    return 4 * sum(1 for s, kind in use.kind.items()
                   if kind == ResultKind.ROW and use.result(s) is not None)


def sweep(rules=None, archs=ARCHS, dtypes=DTYPES, per_element_rules=PER_ELEMENT,
          fp_fusion: bool = aot.FP_FUSION, out=sys.stdout, reduce_only=False) -> list[dict]:
    from ._base import REGISTRY
    from ..compiler.printers.triton import rounding_test_source
    from ..kernels.cache import load_module

    records = []

    def emit(record):
        records.append(record)
        print(json.dumps(record), file=out, flush=True)

    for name in rules or list(REGISTRY):
        for dtype in dtypes:
            for label, fn, sig, consts, expect, source, plan in rule_kernels(name, dtype):
                if reduce_only and "ROWS" not in consts:
                    continue
                for arch in archs:
                    t0 = time.perf_counter()
                    rec = {"rule": name, "dtype": dtype, "kernel": label, "arch": arch}
                    warps = WARPS if "BLOCK_SIZE" in consts else REDUCE.num_warps
                    try:
                        stats = aot.compile_kernel(fn, sig, consts, arch, warps,
                                                   fp_fusion=fp_fusion)
                        rec.update(stats.as_dict())
                    except Exception as exc:  # noqa: BLE001 - reported, the test fails it
                        rec["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
                    ept = BLOCK // (32 * warps) if "BLOCK_SIZE" in consts else \
                        consts["ROWS"] * consts["COLS"] // (32 * warps)
                    # full-block paths compiled: 3 for a kernel reading row results
                    # (one row / across one row end / short rows): their accesses add up
                    paths = 3 if source is not None and aot.ONE_ROW in source else 1
                    rec.update(elements_per_thread=ept, expect_load_bytes=expect[0],
                               expect_store_bytes=expect[1], full_paths=paths,
                               gather_load_bytes=expect[2] if len(expect) > 2 else 0)
                    if paths > 1:
                        rec["expect_row_gather_bytes"] = _row_gather_bytes(plan)
                    if source is not None and arch == 90 and "error" not in rec \
                            and (name in per_element_rules or paths > 1):
                        rec.update(per_element(source, plan, fp_fusion))
                    rec["seconds"] = round(time.perf_counter() - t0, 2)
                    emit(rec)
    round_mod = load_module(rounding_test_source(), "triton")
    for arch in archs:
        for sr in (False, True):
            rec = {"rule": "round_to_bf16", "dtype": "float32",
                   "kernel": f"round-{'sr' if sr else 'rne'}", "arch": arch}
            try:
                rec.update(aot.compile_kernel(round_mod.round_to_bf16, aot.ROUND,
                                              {"STOCHASTIC": sr, "BLOCK_SIZE": 4096}, arch,
                                              8, fp_fusion=fp_fusion).as_dict())
            except Exception as exc:  # noqa: BLE001
                rec["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            emit(rec)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", default="", help="comma-separated catalogue names (default all)")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--archs", default=",".join(map(str, ARCHS)))
    ap.add_argument("--fp-fusion", type=int, default=int(aot.FP_FUSION))
    ap.add_argument("--reduce-only", action="store_true", help="only the reduce kernels")
    args = ap.parse_args(argv)
    sweep([r for r in args.rules.split(",") if r] or None,
          tuple(int(a) for a in args.archs.split(",")), tuple(args.dtypes.split(",")),
          fp_fusion=bool(args.fp_fusion), reduce_only=args.reduce_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
