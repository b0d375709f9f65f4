"""The numba backend runs where users run: a read-only install without a writable HOME,
and the child of a fork after the parent has stepped."""
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import optforge
from tests.kernels.other_user import OTHER, can_switch_uid

ROOT = Path(optforge.__file__).resolve().parents[1]
HERE = Path(__file__).parent


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPTFORGE_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR", "TMPDIR",
                        "NUMBA_THREADING_LAYER")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.skipif(not can_switch_uid(), reason="needs root and setpriv to act as a user "
                    "who cannot write the install (root can write anything)")
def test_a_read_only_install_without_a_writable_home():
    """Before: numba's ``cache=True`` on optforge's own helpers raised "no locator
    available" at import (neither __pycache__ nor ~/.cache/numba writable)."""
    assert not os.access(ROOT / "optforge", os.W_OK) or os.geteuid() == 0
    scratch = Path(tempfile.mkdtemp(prefix="optforge-ro-", dir="/tmp"))
    scratch.chmod(0o1777)  # a TMPDIR the user can write, like /tmp
    try:
        run = subprocess.run(
            [*OTHER, sys.executable, str(HERE / "planted_cache_worker.py"), "step"],
            capture_output=True, text=True, check=False, timeout=600, cwd="/",
            env=_env(HOME="/nonexistent", TMPDIR=str(scratch)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"ok": True}


# the layer optforge picks: GNU OpenMP where torch runs on it (torch's own pool), else a
# fork-safe one: TBB where pip's tbb is installed (a dependency on x86-64 Linux), else
# workqueue
HAS_TBB = (Path(sys.prefix) / "lib" / "libtbb.so.12").is_file()


@functools.lru_cache(maxsize=None)
def default_layer() -> str:
    """Asked in a fresh process, as the tests' subprocesses will choose."""
    on_gomp = subprocess.run(
        [sys.executable, "-c", "import torch; from optforge.kernels.numba import jit; "
         "print(jit._torch_uses_openmp())"], capture_output=True, text=True, check=True,
        env=_env()).stdout.strip() == "True"
    return "omp" if on_gomp else ("tbb" if HAS_TBB else "workqueue")


LAYERS = [None, "workqueue", "omp"] + (["tbb"] if HAS_TBB else [])


@pytest.mark.parametrize("layer", LAYERS)
def test_a_forked_child_can_step(layer, tmp_path):
    """Before: the child was killed ("fork() called from a process already using GNU
    OpenMP"). Under OpenMP (the default where torch runs on it) the child runs serial
    twins of the kernels (the same bits); the child does torch math, as a training
    process does, with gradients made after the fork."""
    extra = {"OPTFORGE_CACHE_DIR": str(tmp_path / "cache"), "CHILD_TORCH_MATH": "1"}
    if layer:
        extra["NUMBA_THREADING_LAYER"] = layer
    run = subprocess.run([sys.executable, str(HERE / "fork_worker.py")], capture_output=True,
                         text=True, check=False, timeout=600, env=_env(**extra))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report == {"exitcode": 0, "same": True, "layer": layer or default_layer()}, \
        run.stderr[-3000:]


THREADS = """
import json, threading, numba, torch, optforge
torch.set_num_threads(1)
def make(seed):
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(300_000, generator=gen))
    return p, optforge.LAMB([p], lr=1e-2, backend="numba"), gen
def run(p, opt, gen, steps=15):
    for _ in range(steps):
        p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
alone = [make(s) for s in (1, 2)]
for a in alone:
    run(*a)
both = [make(s) for s in (1, 2)]
threads = [threading.Thread(target=run, args=b) for b in both]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"layer": numba.threading_layer(),
                  "same": all(torch.equal(a[0], b[0]) for a, b in zip(alone, both))}))
"""


@pytest.mark.parametrize("layer", [None, "workqueue"] + (["tbb"] if HAS_TBB else []))
def test_two_threads_stepping_two_optimizers(layer, tmp_path):
    """Concurrent steps give the sequential bits: OpenMP and TBB are thread-safe;
    workqueue (the fallback without either, or the user's choice) is not, so optforge
    serialises its launches under it."""
    extra = {"OPTFORGE_CACHE_DIR": str(tmp_path / "cache")}
    if layer:
        extra["NUMBA_THREADING_LAYER"] = layer
    run = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True,
                         check=False, timeout=600, env=_env(**extra))
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"layer": layer or default_layer(),
                                                               "same": True}
