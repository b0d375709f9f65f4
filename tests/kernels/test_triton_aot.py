"""The AOT sweep (optforge/catalogue/aot_sweep.py): kernels compiled for sm_90/sm_80 on
this CPU-only machine, their machine code checked against what the design promises.

* every kernel compiles, spills nothing, has no stack frame and no float64;
* on the aligned full-block path every tensor access is 128 bits wide, and their count
  per element is the traffic model's bytes (elementwise, pre-stage and flat reduce
  kernels; reduce tiles over rows whose length is a multiple of 8 too);
* measured on the full-block path alone (per_element in sweep.py): global bytes per
  element equal the traffic model's, and bfloat16 costs at most a few instructions per
  element more than float32 (native conversions; the bit trick cost ~30);
* no 64-bit integer division per element anywhere (at most one per program: a kernel
  reading row results finds its block's first row once); kernels reading row results
  (AdamP, SGDP) move the model's bytes on a block inside one row and on a block across
  a row end, and on short rows gather only the row results on top.

The quick tests (AdamW, Lion, LAMB; AdamP, SGDP; sm_90) run in ``make test``; the whole
catalogue on both architectures in ``make test-slow`` (752 kernel records, 10-14 minutes
on 2 shared cores).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# bfloat16 over float32, SASS instructions per element: native cvt costs ~1 per loaded
# tensor and ~1 per stored one; the interpreter's bit trick cost 20-34 (docs/gpu.md)
BF16_EXTRA_MAX = 12


def run_sweep(tmp_path, *args) -> list[dict]:
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # a fresh cache: a cached kernel skips ptxas and its register report
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton"), OPTFORGE_CACHE_DIR=str(tmp_path / "of"),
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", "optforge.catalogue.aot_sweep",
                           *args], capture_output=True, text=True, timeout=3000, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def check(records: list[dict]) -> None:
    assert records
    for r in records:
        name = f"{r['rule']}/{r['dtype']}/{r['kernel']}/sm_{r['arch']}"
        assert "error" not in r, f"{name}: {r.get('error')}"
        assert (r["spill_stores"], r["spill_loads"], r["stack"]) == (0, 0, 0), name
        assert r["f64"] == 0, name
        assert r["div64"] <= 1, name  # (per program: the block's first row)
        if "expect_load_bytes" not in r:  # the rounding kernel
            continue
        ept = r["elements_per_thread"]
        loads, stores = r["expect_load_bytes"], r["expect_store_bytes"]
        if r["kernel"] in ("elementwise", "pre") and r["full_paths"] > 1:
            # row-gathering kernels: a full path per case, each vectorized (but the
            # 64-bit one may not be); per_element below checks the one-row case exactly
            assert ept * loads <= r["v4_loads"] * 16 <= 3 * ept * loads, name
            assert ept * stores <= r["v4_stores"] * 16 <= 3 * ept * stores, name
        elif r["kernel"] in ("elementwise", "pre") or r["kernel"].endswith("-cols1"):
            # the masked tail path is never vectorized: every 128-bit access is the full path's
            assert r["v4_loads"] * 16 == ept * loads, name
            assert r["v4_stores"] * 16 == ept * stores, name
        elif loads:  # row tiles: the masked path may be vectorized too (row ends aligned)
            assert r["v4_loads"] * 16 in (ept * loads, 2 * ept * loads), name
        if "sass_per_element" in r:  # (row-gathering kernels: a block inside one row)
            # (plus the column results an element gathers: Adafactor's col_var)
            assert r["load_bytes_per_element"] == loads + r.get("gather_load_bytes", 0), name
            assert r["store_bytes_per_element"] == stores, name
            assert r["div64_per_element"] == 0, name
        if "two_rows_sass_per_element" in r:  # row-reading kernels' other cases
            check_row_cases(r, name)


def check_row_cases(r: dict, name: str) -> None:
    """A block across a row end: the model's bytes (each row's results once per program);
    short rows: plus one gathered float per row result; no 64-bit division in either."""
    loads, stores = r["expect_load_bytes"], r["expect_store_bytes"]
    loads += r.get("gather_load_bytes", 0)  # (the column results an element gathers)
    assert r["two_rows_load_bytes_per_element"] == loads, name
    assert r["two_rows_store_bytes_per_element"] == stores, name
    assert r["short_rows_load_bytes_per_element"] == loads + r["expect_row_gather_bytes"], name
    assert r["short_rows_store_bytes_per_element"] == stores, name
    assert r["two_rows_div64_per_element"] == r["short_rows_div64_per_element"] == 0, name


def _per_element(records, rule, dtype):
    (r,) = [r for r in records if (r["rule"], r["dtype"], r["kernel"], r["arch"])
            == (rule, dtype, "elementwise", 90)]
    return r["sass_per_element"]


def test_adamw_lion_lamb_for_sm90(tmp_path):
    records = run_sweep(tmp_path, "--rules", "AdamW,Lion,LAMB", "--archs", "90")
    check(records)
    for rule in ("AdamW", "Lion", "LAMB"):
        extra = _per_element(records, rule, "bfloat16") - _per_element(records, rule, "float32")
        assert extra <= BF16_EXTRA_MAX, (rule, extra)
    flat = [r for r in records if r["kernel"] == "r0-cols1"]  # LAMB's norms
    assert flat and all(r["v4_loads"] > 0 for r in flat)
    # FMA contraction pinned off (configs.FP_FUSION): no fused multiply-add in rules made
    # of + - * / sqrt (transcendentals' own expansions use FMAs: rules with pow or exp)
    assert all(r["fma"] == 0 for r in records), [(r["rule"], r["kernel"]) for r in records
                                                 if r["fma"]]


def test_adamp_sgdp_row_results_for_sm90(tmp_path):
    """AdamP/SGDP's elementwise kernels read per-row results: whichever case a full block
    is, a step moves the traffic model's bytes (AdamP float32: 16 B read by the reduce
    stage + 28 B by the elementwise kernel = 44 B/param; the 64-bit row division
    gathering per element made it 52 and more)."""
    from optforge.catalogue import REGISTRY
    records = run_sweep(tmp_path, "--rules", "AdamP,SGDP", "--archs", "90",
                        "--dtypes", "float32")
    check(records)
    for rule in ("AdamP", "SGDP"):
        mine = {r["kernel"]: r for r in records if r["rule"] == rule}
        ew = mine["elementwise"]
        assert "two_rows_sass_per_element" in ew and "short_rows_sass_per_element" in ew
        r0 = mine["r0-cols1"]  # the reduce stage's loads, measured (all 128-bit)
        reduce_bytes = r0["v4_loads"] * 16 / r0["elements_per_thread"]
        for case in ("", "two_rows_"):
            step = (reduce_bytes + ew[f"{case}load_bytes_per_element"]
                    + ew[f"{case}store_bytes_per_element"])
            assert step == REGISTRY[rule].traffic().total, (rule, case, step)


@pytest.mark.slow
def test_every_catalogue_kernel_for_sm90_and_sm80(tmp_path):
    records = run_sweep(tmp_path)
    check(records)
    from optforge.catalogue import REGISTRY
    assert {r["rule"] for r in records} == set(REGISTRY) | {"round_to_bf16"}
    assert {r["arch"] for r in records} == {90, 80}
