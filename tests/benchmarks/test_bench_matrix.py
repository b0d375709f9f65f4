"""benchmarks/bench_matrix.py on tiny matrices: the checks it makes, the JSON it writes.

Timings are not asserted (they depend on the machine); the structure, the agreement
check (that it passes for the real optimizers and fails for a wrong one), the plan counts
and the instrumentation's clean-up are.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_matrix.py"
TINY = [(24, 16), (16, 40), (32, 32)]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_matrix
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return bench_matrix


def test_agreement_passes_for_muon_and_catches_a_wrong_optimizer(bench, monkeypatch):
    agree = bench.agreement(TINY, CPU)
    assert set(agree["vs_torch_optim_displacement_rel"]) == {"optforge-numba", "optforge-torch"}
    assert all(0 <= r < bench.AGREE_TOL for r in agree["vs_torch_optim_displacement_rel"].values())
    real = bench.variants

    def wrong(params_for, device):  # torch.optim.Muon without Nesterov: a different rule
        out = real(params_for, device)
        out["torch.optim.Muon"] = torch.optim.Muon(
            params_for(), adjust_lr_fn="original", **dict(bench.HYPER, nesterov=False))
        return out
    monkeypatch.setattr(bench, "variants", wrong)
    with pytest.raises(AssertionError, match="disagrees with torch.optim.Muon"):
        bench.agreement(TINY, CPU)


def test_plan_fuses_momentum_with_nesterov_and_update_with_decay(bench):
    """Two elementwise passes: momentum + Nesterov mix (the pre-stage), then the update
    with weight decay; nothing left for torch ops in the matrix stage's argument."""
    passes = bench.plan_passes()
    assert passes["elementwise_passes"] == 2 and passes["matrix_stages"] == 1
    assert sorted(passes["pre_stage_writes"]) == ["momentum_buffer", "pre0"]
    assert passes["elementwise_stage_writes"] == ["p"]
    assert passes["torch_ops_in_matrix_stage_argument"] == 0


def test_ops_counts_binary_operations(bench):
    import sympy as sp
    a, b, c = sp.symbols("a b c")
    assert bench._ops(a + b * c) == 2 and bench._ops(a * b * c) == 2 and bench._ops(a) == 0


def test_main_writes_json_and_png_and_restores_newton_schulz(bench, monkeypatch, tmp_path):
    from optforge.kernels import matrix as mx
    before = (mx.orthogonalize, torch.optim._muon._zeropower_via_newtonschulz)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "SHAPES", TINY)
    bench.main(["--repeats", "2"])
    assert (mx.orthogonalize, torch.optim._muon._zeropower_via_newtonschulz) == before
    (json_path,) = tmp_path.glob("matrix-cpu*.json")
    assert json_path.with_suffix(".png").stat().st_size > 0
    data = json.loads(json_path.read_text())
    assert {"machine", "agreement", "plan", "results", "table", "shapes"} <= set(data)
    res = data["results"]
    names = {"optforge-numba", "optforge-torch", "torch.optim.Muon"}
    assert set(res["ms"]) == names | {"copy-numba", "copy-torch"}
    assert all(len(v) == 2 and min(v) > 0 for v in res["raw_ms"].values())
    assert res["numel"] == sum(a * b for a, b in TINY) and res["tensors"] == len(TINY)
    assert set(res["breakdown_ms"]) == names
    for name, row in res["breakdown_ms"].items():
        assert row["step"] > 0 and row["newton-schulz"] > 0, name
        if name.startswith("optforge"):
            assert row["elementwise kernel"] > 0 and "matrix stage other" in row, name
            assert row["pre-stage kernel"] > 0, name
    assert "torch.optim.Muon" in data["table"] and isinstance(data["target_met"], bool)


def test_cuda_option_without_a_gpu_is_a_clear_error(bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--device", "cuda"])
    assert exc.value.code == 2 and "needs a CUDA GPU" in capsys.readouterr().err
