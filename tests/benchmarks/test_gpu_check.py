"""benchmarks/gpu_check.py (`make gpu-check`): its dry run goes end to end on the CPU, and
its GPU run asks for what the device check must cover."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return gpu_check


def test_the_gpu_run_covers_tests_parity_tune_and_the_benchmark(tmp_path, monkeypatch):
    gc = _module()
    monkeypatch.delenv("GPU_CHECK_DRY", raising=False)
    plan = {name: cmd for name, cmd, _ in gc.steps("python", tmp_path)}
    assert list(plan) == ["install", "triton tests", "parity", "tune", "bench"]
    assert plan["install"][-5:] == ["--no-deps", "--no-build-isolation", "--no-index", "-e", "."]
    assert "--dry-run" not in plan["install"]
    assert "tests/kernels/test_triton.py" in plan["triton tests"]
    assert plan["parity"][-2:] == ["-k", gc.PARITY]
    assert plan["tune"][1:4] == ["-m", "optforge", "tune"]
    bench = " ".join(plan["bench"])
    assert "--sizes 16M,64M,256M" in bench and "--device" not in bench
    assert sum(share for _, _, share in gc.steps("python", tmp_path)) <= 1.0
    assert "TRITON_INTERPRET" not in gc.environment(tmp_path)


def test_brought_wheels_are_installed_without_an_index(tmp_path, monkeypatch):
    gc = _module()
    monkeypatch.delenv("GPU_CHECK_DRY", raising=False)
    for name in ("tqdm-4.0-py3-none-any.whl", "hypothesis-6.0-py3-none-any.whl", "notes.txt"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("GPU_CHECK_WHEELS", str(tmp_path))
    install = {name: cmd for name, cmd, _ in gc.steps("python", tmp_path)}["install"]
    assert install[4:6] == [str(tmp_path / "hypothesis-6.0-py3-none-any.whl"),
                            str(tmp_path / "tqdm-4.0-py3-none-any.whl")]
    assert install[-5:] == ["--no-deps", "--no-build-isolation", "--no-index", "-e", "."]
    monkeypatch.setenv("GPU_CHECK_WHEELS", str(tmp_path / "absent"))
    assert gc.wheels() == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_without_a_gpu_it_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_DRY"}
    env["GPU_CHECK_OUT"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2 and "GPU_CHECK_DRY=1" in done.stderr


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(GPU_CHECK_DRY="1", GPU_CHECK_OUT=str(tmp_path))
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=1500, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("gpu_check_*.json")
    data = json.loads(path.read_text())
    assert data["dry"] and data["ok"]
    assert [s["name"] for s in data["steps"]] == ["install", "triton tests", "parity", "tune",
                                                 "bench"]
    steps = {s["name"]: s for s in data["steps"]}
    assert "passed" in steps["parity"]["pytest"] and "failed" not in steps["parity"]["pytest"]
    assert {r["rule"] for r in data["bench"]} == {"AdamW", "Lion", "LAMB", "Muon"}
    assert {r["mode"] for r in data["bench"]} >= {"fp32", "bf16"}
    assert path.with_suffix(".png").stat().st_size > 0
