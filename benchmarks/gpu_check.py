"""One-shot device check for a lent NVIDIA GPU: `make gpu-check` (docs/gpu.md).

On a machine with torch and triton but no package index it runs, within ~8 minutes:
1. ``pip install --no-deps --no-build-isolation -e .`` (nothing downloaded), with the
   wheels brought in GPU_CHECK_WHEELS (default ./wheels) if any;
2. the Triton test suite on CUDA (compiled kernels, not the interpreter);
3. compiled-vs-torch parity of every catalogue rule in float32 and bfloat16 (the
   ``test_matches_torch_backend`` cases of that suite, counted apart);
4. ``optforge tune`` for the default catalogue rules;
5. ``bench_gpu.py``: AdamW, Lion, LAMB, Muon against torch and a device copy, fp32 and
   bf16, 16M-256M parameters;
and writes one report, benchmarks/results/gpu_check_<device>.json and .png.

``GPU_CHECK_DRY=1``: the same steps on the CPU under the Triton interpreter with tiny
sizes and a few tests, no install (pip resolves it with --dry-run), results under a
temporary folder unless GPU_CHECK_OUT says where: proves the script before a GPU is lent.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGET_S = 480  # the whole check, as the issue asks; each step gets a share
DRY_BUDGET_S = 1500  # the interpreter on a shared CPU: slow, and not what is measured
TRITON_TESTS = ["tests/kernels/test_triton.py", "tests/kernels/test_triton_reduce.py",
                "tests/kernels/test_triton_policy.py", "tests/kernels/test_triton_multistep.py",
                "tests/kernels/test_triton_rounding.py", "tests/kernels/test_triton_configs.py",
                "tests/kernels/test_triton_row_paths.py",
                "tests/kernels/test_triton_reduce_alignment.py"]
PARITY = "test_matches_torch_backend"
DRY_PARITY = ("AdamW-lr=0.01-torch.bfloat16", "Lion-lr=0.001-torch.float32")


def dry() -> bool:
    return os.environ.get("GPU_CHECK_DRY", "0") not in ("", "0")


def run_step(name: str, cmd: list[str], timeout: float, env: dict) -> dict:
    """Run one step; its outcome, duration and the tail of its output."""
    t0 = time.time()
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(10.0, timeout))
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = "timeout", (exc.stdout or b"").decode(errors="replace") if isinstance(
            exc.stdout, bytes) else (exc.stdout or "")
    step = {"name": name, "rc": rc, "ok": rc == 0, "seconds": round(time.time() - t0, 1),
            "tail": out[-3000:]}
    # pytest's last line: "3 passed, 1 skipped in 2.5s" (-q) or "=== ... in 2.5s ==="
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|error|skipped|deselected)[^\n]*?) in "
                         r"[\d.]+s", out, re.M)
    if summary:
        step["pytest"] = summary[-1]
    print(f"   {'ok' if step['ok'] else 'FAILED'} in {step['seconds']} s"
          + (f": {step['pytest']}" if "pytest" in step else ""), flush=True)
    return step


def wheels() -> list[str]:
    """Wheels brought for a machine without a package index (what its torch/triton
    environment lacks: matplotlib, hypothesis...), from GPU_CHECK_WHEELS (default
    ./wheels): installed with optforge, without dependencies."""
    folder = Path(os.environ.get("GPU_CHECK_WHEELS", ROOT / "wheels"))
    return sorted(str(p) for p in folder.glob("*.whl")) if folder.is_dir() else []


def steps(py: str, out: Path) -> list[tuple[str, list[str], float]]:
    """(name, command, share of the budget) for this mode."""
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if dry():
        tune = [py, "-c", "from benchmarks.gpu_check import dry_tune; dry_tune()"]
        return [
            ("install", [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                         "--no-index", "--dry-run", "-e", "."], 0.1),
            ("triton tests", pytest + ["tests/kernels/test_triton_rounding.py",
                                       "tests/kernels/test_triton_configs.py"], 0.2),
            ("parity", pytest + [f"tests/kernels/test_triton.py::{PARITY}[{case}]"
                                 for case in DRY_PARITY], 0.25),
            ("tune", tune, 0.15),
            ("bench", [py, "benchmarks/bench_gpu.py", "--device", "cpu", "--sizes", "4K",
                       "--reps", "1", "--no-many", "--rules", "AdamW", "Lion", "LAMB", "Muon",
                       "--out", str(out / "bench")], 0.3)]
    return [
        ("install", [py, "-m", "pip", "install", *wheels(), "--no-deps",
                     "--no-build-isolation", "--no-index", "-e", "."], 0.05),
        ("triton tests", pytest + TRITON_TESTS + ["-k", f"not {PARITY}"], 0.25),
        ("parity", pytest + ["tests/kernels/test_triton.py", "-k", PARITY], 0.2),
        ("tune", [py, "-m", "optforge", "tune", "AdamW", "Lion", "LAMB", "Adam", "SGD"], 0.15),
        ("bench", [py, "benchmarks/bench_gpu.py", "--sizes", "16M,64M,256M", "--no-many",
                   "--reps", "10", "--out", str(out / "bench")], 0.35)]


def dry_tune() -> None:
    """The tune step of a dry run: the tuner's search on the CPU under the interpreter."""
    import torch

    from optforge.catalogue.tuning import tune_catalogue
    from optforge.kernels.triton.autotune import Autotuner
    with tempfile.TemporaryDirectory() as tmp:
        tuner = Autotuner(Path(tmp) / "tune.json", devices=("cpu",))
        found = tune_catalogue(["AdamW"], progress=False, device="cpu",
                               sets=[("4K", [4096])], dtypes=(torch.float32,), tuner=tuner)
        assert tuner.searches == 1, tuner.searches
        print(json.dumps({" ".join(k): v for k, v in found.items()}))


def environment(out: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OPTFORGE_CACHE_DIR"] = str(out / "cache")  # tuning results of this run only
    if dry():
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)  # compiled kernels, on the GPU
    return env


def report(results: list[dict], out: Path, started: float) -> dict:
    bench = out / "bench.json"
    data = {"dry": dry(), "steps": results, "seconds": round(time.time() - started, 1),
            "budget_s": DRY_BUDGET_S if dry() else BUDGET_S, "ok": all(s["ok"] for s in results),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if bench.exists():
        b = json.loads(bench.read_text())
        data.update(device=b["device"], capability=b["capability"], torch=b["torch"],
                    triton=b["triton"], bench=b["rows"], targets=b["targets"])
    return data


def main() -> int:
    started = time.time()
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "optforge-gpu-check" if dry() else RESULTS
    out = Path(os.environ.get("GPU_CHECK_OUT", default))
    out.mkdir(parents=True, exist_ok=True)
    # the benchmark's own files and this run's kernel/tuning caches: not kept
    work = Path(tempfile.mkdtemp(prefix="optforge-gpu-check-"))
    py, env = sys.executable, environment(work)
    if not dry():
        import torch
        if not torch.cuda.is_available():
            print("make gpu-check needs a CUDA GPU (GPU_CHECK_DRY=1 runs it on the CPU)",
                  file=sys.stderr)
            return 2
    results, budget = [], DRY_BUDGET_S if dry() else BUDGET_S
    for name, cmd, share in steps(py, work):
        left = budget - (time.time() - started)
        results.append(run_step(name, cmd, min(left, share * budget * 1.5), env))
    data = report(results, work, started)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", data.get("device", "unknown")).strip("-").lower()
    stem = out / f"gpu_check_{slug}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    if (work / "bench.png").exists():
        shutil.copy(work / "bench.png", stem.with_suffix(".png"))
    shutil.rmtree(work, ignore_errors=True)
    for line in data.get("targets", []):
        print(line)
    print(f"{'all steps passed' if data['ok'] else 'SOME STEPS FAILED'} in {data['seconds']} s;"
          f" wrote {stem}.json and .png")
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
