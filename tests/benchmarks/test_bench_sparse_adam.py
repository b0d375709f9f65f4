"""benchmarks/bench_sparse_adam.py on a tiny embedding: it runs, and every optforge variant
ends where torch.optim.SparseAdam does (timings are not asserted)."""
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sparse_adam.py"


def test_tiny_run_agrees_with_torch(capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_sparse_adam
    finally:
        sys.path.remove(str(SCRIPT.parent))
    differences = bench_sparse_adam.main(rows=300, dim=8, batch=64)
    assert set(differences) == {"optforge, numba", "optforge, torch"}
    assert all(d < 1e-6 for d in differences.values()), differences
    assert "torch.optim.SparseAdam" in capsys.readouterr().out
