"""benchmarks/bench_elementwise.py's timing protocol and tables on tiny tensors.

Timings are not asserted; what is: every variant is timed in every position of the
interleaved order (no variant always follows the same one), and a case reports every
variant of every rule, for bench_elementwise and for bench_multistage, which reuses it.
"""
import argparse
import json

import pytest
from tests.benchmarks.bench_import import benchmark_modules



@pytest.fixture(scope="module")
def benches():
    return benchmark_modules("bench_elementwise", "bench_multistage")


def test_interleaved_order_rotates_through_every_position(benches):
    bench, _ = benches
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    times = bench.interleaved_times(steps, repeats=4, warmup=1)
    assert {name: len(t) for name, t in times.items()} == dict.fromkeys("abcd", 4)
    timed = [calls[4 + 4 * r: 8 + 4 * r] for r in range(4)]  # after the warmup round
    assert timed == [list("abcd"), list("bcda"), list("cdab"), list("dabc")]
    for name in "abcd":  # each variant once in each position
        assert sorted(order.index(name) for order in timed) == [0, 1, 2, 3]


@pytest.mark.parametrize("rule", ["AdamW", "Lion", "Adagrad"])
def test_elementwise_case_times_every_variant(benches, rule):
    bench, _ = benches
    r = bench.time_case(rule, [1000, 2500], repeats=2, warmup=1)
    expected = {"optforge-numba", "torch-loop", "torch-foreach", "copy"}
    expected |= set() if rule == "Lion" else {"torch-fused"}
    assert set(r["ms"]) == expected and r["numel"] == 3500 and r["tensors"] == 2
    assert all(len(v) == 2 and min(v) > 0 for v in r["raw_ms"].values())
    assert f"{rule:8} tiny" in bench.table([{**r, "rule": rule, "case": "tiny"}])


@pytest.mark.parametrize("rule", ["LAMB", "clip+AdamW"])
def test_multistage_case_uses_its_own_variants_and_traffic(benches, rule):
    _, multi = benches
    r = multi.time_case(rule, [1000, 2500], repeats=2)
    assert "optforge-numba" in r["ms"] and "copy" in r["ms"] and len(r["ms"]) >= 3
    assert r["bytes_per_param"] == multi.bytes_per_param(rule)


def test_run_cases_and_results_files(benches, monkeypatch, tmp_path):
    """The driver both benchmarks share: every rule x case timed, then JSON + plot."""
    bench, multi = benches
    monkeypatch.setattr(bench, "cases", lambda quick: iter([("tiny", [1000, 2500])]))
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    args = argparse.Namespace(quick=True, repeats=2)
    results = bench.run_cases(["LAMB"], multi.time_case, args, label="ours")
    assert [(r["rule"], r["case"], r["repeats"]) for r in results] == [("LAMB", "tiny", 2)]
    info = {**bench.machine(), "load_avg_at_end": (0.0, 0.0, 0.0)}
    assert "load average at start" in bench.describe(info)
    stem = bench.write_results("multistage", {"machine": info, "results": results,
                                              "table": multi.table(results)})
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["results"][0]["rule"] == "LAMB" and stem.with_suffix(".png").is_file()
