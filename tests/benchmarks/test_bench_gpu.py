"""benchmarks/bench_gpu.py imports anywhere and, without a GPU, says so and measures nothing."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_exits_with_a_clear_message_without_cuda(tmp_path):
    before = set((SCRIPT.parent / "results").glob("bench_gpu_*"))
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "Traceback" not in done.stderr
    assert set((SCRIPT.parent / "results").glob("bench_gpu_*")) == before


def test_rules_with_float32_states_match_the_catalogue_traffic():
    """The bf16-params mode's rules keep float32 states: their traffic says so."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    # AdamW, bf16 params and grads, fp32 states: read 2+2+4+4, write 2+4+4
    assert bench_gpu.traffic_bytes("AdamW", "bf16p-fp32s", "optforge-triton") == 22
    assert bench_gpu.traffic_bytes("AdamW", "bf16p-fp32s", "torch-fused") == 14
    assert bench_gpu.traffic_bytes("Lion", "fp32", "optforge-triton") == 20
    assert bench_gpu.traffic_bytes("Adagrad", "bf16p-fp32s", "optforge-triton") == 14


def test_float32_state_rules_compute_what_the_catalogue_does():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    import optforge
    for name, fn in bench_gpu._f32_state_rules().items():
        a = torch.nn.Parameter(torch.linspace(-1, 1, 50))
        b = torch.nn.Parameter(torch.linspace(-1, 1, 50))
        o1 = optforge.Optimizer([a], fn, backend="torch")
        o2 = getattr(optforge, name)([b], backend="torch")
        for k in range(3):
            g = torch.cos(torch.arange(50.0) * (k + 1))
            a.grad, b.grad = g.clone(), g.clone()
            o1.step()
            o2.step()
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), name
