"""benchmarks/plotting.py redraws every stored result from its JSON, without timing."""
from __future__ import annotations

import shutil

import pytest
from tests.benchmarks.bench_import import BENCH, benchmark_modules

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def plotting():
    return benchmark_modules("plotting")[0]


# the results plotting.py draws (bench_distributed.py draws its own figure)
REPLOTTED = ("elementwise-", "multistage-", "new-entries-", "matrix-", "demo-")


@pytest.mark.parametrize("json_path", sorted(p for p in (BENCH / "results").glob("*.json")
                                             if p.name.startswith(REPLOTTED)),
                         ids=lambda p: p.stem)
def test_every_stored_result_replots(plotting, json_path, tmp_path):
    copy = tmp_path / json_path.name
    shutil.copy(json_path, copy)
    png = plotting.replot(copy)
    assert png == copy.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_speedups_are_against_the_fastest_reference(plotting):
    name, ms = plotting._best_reference({"optforge-numba": 1.0, "torch-loop": 3.0,
                                         "torch-foreach": 2.0, "copy": 0.5})
    assert (name, ms) == ("torch-foreach", 2.0)


def test_an_unknown_result_kind_is_a_clear_error(plotting, tmp_path):
    odd = tmp_path / "other-thing.json"
    odd.write_text("{}")
    with pytest.raises(ValueError, match="no figure for this kind of result"):
        plotting.replot(odd)


def test_with_no_arguments_every_drawable_result_is_redrawn_and_the_rest_left(
        plotting, tmp_path, monkeypatch):
    """``python benchmarks/plotting.py`` (the README's command) stopped at the first
    stored result it has no figure for (bandwidth-, compare-, step-overhead-...)."""
    stored = sorted(p for p in (BENCH / "results").glob("demo-*.json"))[:1]
    assert stored, "no demo result stored to redraw"
    shutil.copy(stored[0], tmp_path / stored[0].name)
    (tmp_path / "compare-elementwise.json").write_text("{}")
    monkeypatch.setattr(plotting, "RESULTS", tmp_path)
    assert plotting.main([]) == 0
    assert (tmp_path / stored[0].name).with_suffix(".png").is_file()
    assert not (tmp_path / "compare-elementwise.png").exists()


def test_demo_loss_curves_replot(plotting, tmp_path):
    data = {"title": "t", "subtitle": "s", "curves": {
        "torch.optim.AdamW": {"steps": [0, 16, 32], "loss": [1.0, 0.1, 0.01]},
        "optforge.AdamW": {"steps": [0, 16, 32], "loss": [1.0, 0.1, 0.01]}}}
    path = tmp_path / "demo-loss.json"
    path.write_text(__import__("json").dumps(data))
    png = plotting.replot(path)
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
