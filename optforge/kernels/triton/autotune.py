"""Per-device launch-configuration search with a persistent JSON cache.

A kernel's best (BLOCK_SIZE, num_warps, ...) depends on the GPU, the Triton version,
the kernel, the dtypes and the bucket's size, so a result is keyed by all of them
and stored in ``<cache dir>/autotune-v1.json``; a later run (another process) reuses
it without timing anything. Searches time the candidates through a ``run(config)``
callback that the launcher points at *scratch copies* of the written tensors: an
in-place optimizer kernel timed on live buffers would apply the step once per trial.

Tuning runs on CUDA devices unless ``OPTFORGE_AUTOTUNE=0``; elsewhere, and when it is
off, the launcher's heuristic config is used. Tests drive the same machinery on the
CPU (Triton interpreter) by passing ``devices=("cpu",)`` and an injected ``timer``.
A cache file that cannot be read or parsed (binary, truncated, nested past the parser's
recursion limit) is ignored with one warning and rewritten whole; one that cannot be
written (read-only, full disk) leaves the results in memory with one warning. Tuning
is an optimisation: it never raises in the middle of training.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..cache import private_dir

ENV_SWITCH = "OPTFORGE_AUTOTUNE"
FILE_NAME = "autotune-v1.json"
FORMAT_VERSION = 1

Timer = Callable[[Callable[[], None]], float]


def tuning_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class TuneKey:
    device: str
    capability: str
    triton: str
    kernel: str
    dtypes: str
    size_bucket: str

    def text(self) -> str:
        return "|".join((self.device, self.capability, f"triton-{self.triton}", self.kernel,
                         self.dtypes, self.size_bucket))


def size_bucket(numels: tuple[int, ...]) -> str:
    """Powers of two of the total size and of the tensor count: configs tuned for
    16M elements in one tensor serve 9M-16M, but not 300 small tensors."""
    total = max(1, sum(numels))
    return f"n2^{math.ceil(math.log2(total))}-t2^{math.ceil(math.log2(max(1, len(numels))))}"


def device_signature(device: torch.device) -> tuple[str, str]:
    """(device name, compute capability) as the cache key spells them."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return torch.cuda.get_device_name(device), f"sm_{major}{minor}"
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    return (f"{device.type}-interpreter" if interpreted else device.type), "none"


def cuda_timer(fn: Callable[[], None], reps: int = 10, warmup: int = 1) -> float:
    """Median seconds of ``reps`` runs timed with CUDA events, after ``warmup`` runs
    (the first also pays the compilation)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def wall_timer(fn: Callable[[], None], reps: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds (CPU devices, e.g. the Triton interpreter)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Autotuner:
    """Chooses a config per key: from memory, from the JSON file, or by timing."""

    def __init__(self, path: str | os.PathLike | None = None, timer: Timer | None = None,
                 devices: tuple[str, ...] = ("cuda",)):
        if path is None:  # next to the kernels: a directory that is ours and private
            folder = private_dir()
            path = folder / FILE_NAME if folder is not None else None
        self.path = Path(path) if path is not None else None  # None: memory only
        self.timer = timer
        self.devices = devices
        self.searches = 0  # searches run by this tuner (tests count them)
        self._entries: dict[str, dict] | None = None
        self._lock = threading.Lock()
        self._write_failed = False  # warned once; results stay in memory

    def enabled_for(self, device: torch.device) -> bool:
        return tuning_enabled() and device.type in self.devices

    # ---- the persistent file -----------------------------------------------------------
    def _read_file(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:  # unreadable, or not text at all
            warnings.warn(f"optforge: cannot read the tuning cache {self.path} ({exc}); "
                          "tuning again", RuntimeWarning, stacklevel=3)
            return {}
        try:
            data = json.loads(text)
            if data.get("version") != FORMAT_VERSION or not isinstance(data["entries"], dict):
                raise ValueError(f"unexpected format version {data.get('version')!r}")
            return {k: v for k, v in data["entries"].items()
                    if isinstance(v, dict) and isinstance(v.get("config"), dict)}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            warnings.warn(f"optforge: ignoring the corrupted tuning cache {self.path} ({exc}); "
                          "it is rebuilt as configs are tuned", RuntimeWarning, stacklevel=3)
            return {}

    def _write_file(self) -> None:
        # Merge what other processes wrote meanwhile, then replace the file atomically.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            merged = {**self._read_file(), **self._entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": FORMAT_VERSION, "entries": merged}, f, indent=1,
                          sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._entries = merged

    def lookup(self, key: TuneKey) -> dict | None:
        with self._lock:
            if self._entries is None:
                self._entries = self._read_file()
            found = self._entries.get(key.text())
            return dict(found["config"]) if found else None

    def record(self, key: TuneKey, config: dict, seconds: float, trials: int) -> None:
        with self._lock:
            if self._entries is None:
                self._entries = self._read_file()
            self._entries[key.text()] = {"config": dict(config), "seconds": seconds,
                                         "trials": trials,
                                         "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}
            if self._write_failed or self.path is None:
                return
            try:
                self._write_file()
            except OSError as exc:  # read-only, full disk: keep the result in memory
                self._write_failed = True
                warnings.warn(f"optforge: cannot write the tuning cache {self.path} ({exc}); "
                              "tuned configs are kept for this process only",
                              RuntimeWarning, stacklevel=4)

    # ---- the search -----------------------------------------------------------------
    def choose(self, key: TuneKey, device: torch.device, candidates: list[dict],
               run: Callable[[dict], None], heuristic: dict,
               valid: Callable[[dict], bool] = lambda c: True) -> dict:
        """The config for ``key``: cached, else searched (when enabled), else ``heuristic``.

        ``run(config)`` must execute the kernel on scratch data only. ``valid`` rejects
        a cached entry that no longer fits the launcher (edited by hand, older layout).
        """
        if not self.enabled_for(device):
            return dict(heuristic)
        found = self.lookup(key)
        if found is not None and valid(found):
            return found
        timer = self.timer or (cuda_timer if device.type == "cuda" else wall_timer)
        times = {}
        for config in candidates:
            try:
                times[json.dumps(config, sort_keys=True)] = timer(lambda c=config: run(c))
            except Exception as exc:  # noqa: BLE001 - a config the GPU cannot run
                if _out_of_resources(exc):
                    continue
                raise
        self.searches += 1
        if not times:
            return dict(heuristic)
        best = min(times, key=times.get)
        config = json.loads(best)
        self.record(key, config, times[best], len(times))
        return config


def _out_of_resources(exc: Exception) -> bool:
    # too many warps or registers for this GPU: skip the candidate, keep searching
    return type(exc).__name__ in ("OutOfResources", "OutOfResourcesError")


_default: Autotuner | None = None


def default_tuner() -> Autotuner:
    """The process-wide tuner (its file follows ``OPTFORGE_CACHE_DIR`` at first use)."""
    global _default
    if _default is None:
        _default = Autotuner()
    return _default


# ---- pre-tuning the catalogue ---------------------------------------------------------
def transformer_like_sizes(layers: int = 24, width: int = 1024, vocab: int = 32000) -> list[int]:
    """A GPT-2-medium-like parameter set (292 tensors, 337M parameters): per layer qkv,
    out, two MLP matrices, their biases and two layer norms; embeddings, final norm."""
    per_layer = [3 * width * width, 3 * width, width * width, width,
                 4 * width * width, 4 * width, 4 * width * width, width,
                 width, width, width, width]
    return [vocab * width, 2048 * width] + per_layer * layers + [width, width]


def default_tuning_sets() -> list[tuple[str, list[int]]]:
    return [("1M", [2**20]), ("16M", [2**24]), ("128M", [2**27]),
            ("transformer-292", transformer_like_sizes())]
