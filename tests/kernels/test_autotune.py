"""The autotuner: scratch-copy searches, the persistent cache, its corruption, its switch.

On a CPU machine this runs the real triton launcher under the interpreter with an
injected timer (wall-clock times of interpreted kernels mean nothing): the timer still
calls each candidate, so a search that touched live buffers would show in the results.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.catalogue import AdamW
from optforge.kernels.triton import configs
from optforge.kernels.triton.launcher import TritonLauncher
from optforge.catalogue.tuning import tune_catalogue
from optforge.kernels.triton.autotune import (FILE_NAME, Autotuner, size_bucket,
                                              transformer_like_sizes)
from optforge.runtime.compiled import compile_rule
from optforge.runtime.state import new_state
from tests.conftest import norm_rel

SIZES = [(1023,), (7, 13), (5000,)]
NUMELS = tuple(torch.Size(s).numel() for s in SIZES)
# block sizes of the first and last candidates here (interpreter or GPU)
FIRST, LAST = (configs.candidates(DEVICE, NUMELS)[i].block_size for i in (0, -1))


@pytest.fixture(autouse=True)
def tuning_on(monkeypatch):
    """These tests drive the tuner; other runs may switch it off (OPTFORGE_AUTOTUNE=0)."""
    monkeypatch.setenv("OPTFORGE_AUTOTUNE", "1")


class FakeTimer:
    """Runs each candidate like a real timer (3 times) and reports made-up seconds:
    the candidate with BLOCK_SIZE == ``fastest`` wins."""

    def __init__(self, fastest: int):
        self.fastest, self.calls = fastest, []

    def __call__(self, fn):
        for _ in range(3):
            fn()
        self.calls.append(1)
        return 1e-3 if self.current == self.fastest else 2e-3

    def wrap(self, run):
        def tracking(config):
            self.current = config["BLOCK_SIZE"]
            run(config)
        return tracking


def _tuner(tmp_path, fastest=LAST, devices=(DEVICE.type,)):
    timer = FakeTimer(fastest)
    tuner = Autotuner(path=tmp_path / FILE_NAME, timer=timer, devices=devices)
    real_choose = tuner.choose
    tuner.choose = lambda key, device, cands, run, *a, **k: real_choose(
        key, device, cands, timer.wrap(run), *a, **k)
    return tuner, timer


def _adamw_step(tuner, params, grads, states, lr=1e-2, step=1.0):
    spec = AdamW.rule
    compiled = compile_rule(spec, spec.default_variant)
    launcher = TritonLauncher(compiled.plan, tuner=tuner)
    launcher(params, grads, states,
             compiled.scalars(spec.hyper_values({**spec.defaults, "lr": lr}), step))
    return launcher


def _bucket(seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen).to(DEVICE) for s in SIZES]
    grads = [torch.randn(s, generator=gen).to(DEVICE) for s in SIZES]
    made = [new_state(compile_rule(AdamW.rule, AdamW.rule.default_variant).plan.states, p,
                      {}) for p in params]
    return params, grads, [[m["exp_avg"] for m in made], [m["exp_avg_sq"] for m in made]]


def test_first_tuned_step_equals_one_reference_step(tmp_path):
    params, grads, states = _bucket()
    ref = [torch.nn.Parameter(p.detach().cpu().clone()) for p in params]
    tuner, timer = _tuner(tmp_path)
    launcher = _adamw_step(tuner, params, grads, states)
    assert tuner.searches == 1 and len(timer.calls) == len(configs.candidates(DEVICE, (1,)))
    opt = optforge.AdamW(ref, lr=1e-2, backend="torch")
    for r, g in zip(ref, grads):
        r.grad = g.cpu().clone()
    opt.step()
    for p, r in zip(params, ref):  # applied once, despite 3 x 3 timed trials
        assert norm_rel(p.cpu(), r.detach()) < 1e-6
    for name, row in zip(["exp_avg", "exp_avg_sq"], states):
        for s, r in zip(row, ref):
            assert norm_rel(s.cpu(), opt.state[r][name]) < 1e-6
    numels = tuple(p.numel() for p in params)
    assert launcher.config_for(torch.float32, DEVICE, numels).block_size == LAST


def test_results_are_persisted_with_the_full_key(tmp_path):
    params, grads, states = _bucket()
    tuner, _ = _tuner(tmp_path, fastest=FIRST)
    launcher = _adamw_step(tuner, params, grads, states)
    entries = json.loads((tmp_path / FILE_NAME).read_text())["entries"]
    (key, entry), = entries.items()
    import triton
    device, capability, version, kernel, dtypes, bucket = key.split("|")
    expected = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu-interpreter"
    assert device == expected and version == f"triton-{triton.__version__}"
    assert kernel == launcher.kernel(torch.float32).digest
    assert dtypes == "p:float32,g:float32,exp_avg:float32,exp_avg_sq:float32"
    assert bucket == size_bucket(tuple(p.numel() for p in params)) == "n2^13-t2^2"
    assert entry["config"] == configs.candidates(DEVICE, NUMELS)[0].as_dict()


def test_a_second_process_reuses_the_cache(tmp_path):
    params, grads, states = _bucket()
    tuner, _ = _tuner(tmp_path, fastest=FIRST)
    _adamw_step(tuner, params, grads, states)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from tests.triton_env import DEVICE
        import torch
        from optforge.kernels.triton.autotune import Autotuner
        from tests.kernels.test_autotune import _adamw_step, _bucket

        def no_timing(fn):
            raise AssertionError("re-tuned although the cache holds this key")

        tuner = Autotuner(path={str(tmp_path / FILE_NAME)!r}, timer=no_timing,
                          devices=(DEVICE.type,))
        launcher = _adamw_step(tuner, *_bucket())
        numels = tuple(torch.Size(s).numel() for s in {SIZES!r})
        print("config", launcher.config_for(torch.float32, DEVICE, numels).block_size,
              "searches", tuner.searches)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"config {FIRST} searches 0" in done.stdout


def test_a_corrupted_cache_is_ignored_and_rebuilt(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_text('{"version": 1, "entries": {"half a fi')
    params, grads, states = _bucket()
    tuner, _ = _tuner(tmp_path, fastest=LAST)
    with pytest.warns(RuntimeWarning, match="corrupted tuning cache"):
        launcher = _adamw_step(tuner, params, grads, states)
    assert tuner.searches == 1
    data = json.loads(path.read_text())  # valid again, with the new result
    assert [e["config"]["BLOCK_SIZE"] for e in data["entries"].values()] == [LAST]
    numels = tuple(p.numel() for p in params)
    assert launcher.config_for(torch.float32, DEVICE, numels).block_size == LAST


def test_an_invalid_cached_config_is_retuned(tmp_path):
    params, grads, states = _bucket()
    tuner, _ = _tuner(tmp_path, fastest=FIRST)
    _adamw_step(tuner, params, grads, states)
    path = tmp_path / FILE_NAME
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["config"]["BLOCK_SIZE"] = 1000  # not a power of two: the kernel cannot use it
    path.write_text(json.dumps(data))
    tuner2, _ = _tuner(tmp_path, fastest=LAST)
    _adamw_step(tuner2, *_bucket())
    assert tuner2.searches == 1


def test_switched_off_uses_the_heuristic(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTFORGE_AUTOTUNE", "0")
    params, grads, states = _bucket()
    tuner, timer = _tuner(tmp_path)
    launcher = _adamw_step(tuner, params, grads, states)
    numels = tuple(p.numel() for p in params)
    assert tuner.searches == 0 and not timer.calls and not (tmp_path / FILE_NAME).exists()
    assert launcher.config_for(torch.float32, DEVICE, numels) == configs.heuristic(DEVICE,
                                                                                     numels)


def test_candidates_the_gpu_cannot_run_are_skipped(tmp_path):
    class OutOfResources(Exception):
        pass

    def timer(fn):
        fn()
        if timer.n == 0:
            timer.n = 1
            raise OutOfResources("too many warps")
        return 1.0
    timer.n = 0
    tuner = Autotuner(path=tmp_path / FILE_NAME, timer=timer, devices=(DEVICE.type,))
    _adamw_step(tuner, *_bucket())
    assert tuner.searches == 1 and (tmp_path / FILE_NAME).exists()


def test_size_buckets():
    assert size_bucket((2**20,)) == "n2^20-t2^0"
    assert size_bucket((2**20 + 1,)) == "n2^21-t2^0"
    assert size_bucket(tuple(transformer_like_sizes())).endswith("-t2^9")
    assert 280 <= len(transformer_like_sizes()) <= 320


def test_tune_catalogue_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(RuntimeError, match="CUDA"):
        tune_catalogue(["AdamW"], progress=False)
    from optforge.cli import main
    assert main(["tune", "AdamW"]) == 2


def test_tune_catalogue_fills_the_cache(tmp_path):
    tuner, _ = _tuner(tmp_path, fastest=FIRST)
    results = tune_catalogue(["adamw", "Lion"], progress=False, device=DEVICE, tuner=tuner,
                             sets=[("small", [3000, 17])], dtypes=(torch.float32,))
    assert set(results) == {("AdamW", "float32", "small"), ("Lion", "float32", "small")}
    assert all(c["BLOCK_SIZE"] == FIRST for c in results.values())
    assert len(json.loads((tmp_path / FILE_NAME).read_text())["entries"]) == 2
    with pytest.raises(ValueError, match="unknown catalogue rule"):
        tune_catalogue(["NoSuchRule"], progress=False, device=DEVICE, tuner=tuner)


def _spoil(kind: str, tmp_path, monkeypatch) -> Path:
    """A tuning-cache path that is binary, deeply nested, unwritable or on a full disk."""
    path = tmp_path / FILE_NAME
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "nested":  # json.loads recurses once per level
        path.write_text('{"version": 1, "entries": ' + "[" * 200_000 + "]" * 200_000 + "}")
    elif kind == "unwritable":  # its folder cannot be made (root ignores permission bits)
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / FILE_NAME
    else:  # full disk: the data never reaches it
        real = os.fsync

        def full(fd):
            if os.fstat(fd).st_size and os.path.realpath(f"/proc/self/fd/{fd}").startswith(
                    str(tmp_path)):
                raise OSError(28, "No space left on device")
            return real(fd)
        monkeypatch.setattr(os, "fsync", full)
    return path


@pytest.mark.parametrize("kind", ["binary", "nested", "unwritable", "full-disk"])
def test_a_bad_tuning_cache_file_warns_and_the_step_works(kind, tmp_path, monkeypatch):
    params, grads, states = _bucket()
    ref = [torch.nn.Parameter(p.detach().cpu().clone()) for p in params]
    path = _spoil(kind, tmp_path, monkeypatch)
    timer = FakeTimer(LAST)
    tuner = Autotuner(path=path, timer=timer, devices=(DEVICE.type,))
    real_choose = tuner.choose
    tuner.choose = lambda key, device, cands, run, *a, **k: real_choose(
        key, device, cands, timer.wrap(run), *a, **k)
    with pytest.warns(RuntimeWarning, match="tuning cache"):
        _adamw_step(tuner, params, grads, states)
    assert tuner.searches == 1
    opt = optforge.AdamW(ref, lr=1e-2, backend="torch")
    for r, g in zip(ref, grads):
        r.grad = g.cpu().clone()
    opt.step()
    for p, r in zip(params, ref):  # applied once, and tuned
        assert norm_rel(p.cpu(), r.detach()) < 1e-6
