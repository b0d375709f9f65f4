"""benchmarks/bench_lowprec.py on tiny tensors: every variant timed, bytes per parameter
from the traffic model, JSON and figure written (timings are not asserted)."""
import json

import pytest
from tests.benchmarks.bench_import import benchmark_modules



@pytest.fixture(scope="module")
def bench():
    return benchmark_modules("bench_lowprec")[0]


def test_a_tiny_run_writes_every_variant(bench, tmp_path):
    stem = bench.main(["--sizes", "1000,2500", "--repeats", "2", "--probe-mib", "1",
                       "--out", str(tmp_path)])
    data = json.loads(stem.with_suffix(".json").read_text())
    assert stem.with_suffix(".png").stat().st_size > 0
    assert [r["rule"] for r in data["results"]] == ["AdamW", "Lion"]
    for r in data["results"]:
        assert set(r["ms"]) == set(bench.STORAGE) | {bench.REFERENCE, "copy"}
        assert r["numel"] == 3500 and all(len(v) == 2 for v in r["raw_ms"].values())
    adamw = data["results"][0]
    assert adamw["bytes_per_param"]["fp32 states"] == 28
    assert adamw["bytes_per_param"]["bf16 states"] == 20
    assert adamw["bytes_per_param"]["bf16 params+states kahan"] == 18
    # 8-bit: a byte per value and a float32 scale per 256 (2 + 8/256 for AdamW's two)
    assert adamw["bytes_per_param"]["8-bit states"] == 4 + 4 + 2 * 2 * (1 + 4 / 256) + 4
    assert adamw["bytes_per_param"]["bf16 params+8-bit states"] == 2 + 2 + 2 + 4 * (1 + 4 / 256)
    assert adamw["state_bytes_per_param"] == {"fp32 states": 8, "bf16 states": 4,
                                              "bf16 states SR": 4,
                                              "bf16 params+states kahan": 6,
                                              "8-bit states": 2 + 8 / 256,
                                              "bf16 params+8-bit states": 2 + 8 / 256}
    assert data["bandwidth"]["sustained_gb_per_s"]["update"] > 0


def test_one_rule_writes_beside_the_full_run(bench, tmp_path):
    stem = bench.main(["--sizes", "1000", "--repeats", "1", "--probe-mib", "1",
                       "--rules", "Lion", "--out", str(tmp_path)])
    assert stem.name.endswith("-lion")
    data = json.loads(stem.with_suffix(".json").read_text())
    assert [r["rule"] for r in data["results"]] == ["Lion"]
    with pytest.raises(SystemExit):
        bench.main(["--rules", "Adam"])  # unknown: refused before anything is timed
