"""Numba compilation that works where users run: read-only installs, no writable HOME,
shared cache settings, and processes that fork.

* ``njit_cached``: ``@njit(cache=True)`` raises "no locator available" at decoration
  (i.e. at import) when neither the module's ``__pycache__`` nor Numba's user-wide
  cache directory can be written: a read-only site-packages with HOME unwritable.
  Compiling without the disk cache then costs time once per process, not the backend.
  A ``NUMBA_CACHE_DIR`` that another user could write to is not used either: Numba's
  index is a pickle, and loading a planted one runs its code (``kernels/trust.py``).
* ``run_parallel``: which of Numba's threading layers runs the kernels. Where torch
  itself runs on GNU OpenMP (pip's Linux wheels), optforge asks Numba for OpenMP too,
  unless the user chose a layer (``NUMBA_THREADING_LAYER``) or one is running already:
  both then share torch's one libgomp thread pool. A second pool (TBB's) fights torch's
  for the cores, because torch's OpenMP workers keep spinning after each torch op: on
  the 2-core test machine an AdamW step right after a torch op took 6.5 ms under TBB
  (10M parameters) and 4.9 ms under OpenMP, and a 1M step 0.30 ms vs 0.22 ms.
  GNU OpenMP is not fork-safe: in the child of a fork whose parent used its pool, a
  parallel region kills the process ("fork() called from a process already using GNU
  OpenMP"). So each parallel kernel runs as a serial twin there: the same Python
  function compiled with ``parallel=False`` (``prange`` is ``range``), the same blocks
  in the same order, hence the same bits. Torch math in such a child works when torch
  ran single-threaded in the parent (tests/kernels/test_where_users_run.py); with
  torch's own pool in use, torch hangs in the child with or without optforge (its
  OpenMP pool is the same libgomp), which TBB would not change.
  Where torch does not use OpenMP, optforge asks for a fork-safe layer ("forksafe": TBB
  when installed, else workqueue). pip's tbb wheel puts ``libtbb.so.12`` in
  ``<prefix>/lib``, where the dynamic loader does not look, so it is loaded by path
  first (``_preload_tbb``). Workqueue wakes its threads for every launch (~0.2 ms) and
  is not thread-safe, so optforge's own launches are serialised by a lock under it (a
  parallel kernel already uses every core).
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numba
from numba.core import config as numba_config
from numba.np.ufunc import parallel  # (importing it starts no threads)

from ..trust import untrusted_reason

_forked = False  # set in the child of every fork (see below)
_layer_chosen = False
_launch_lock = threading.Lock()  # held around launches under the workqueue layer
_serial: bool | None = None  # this process must avoid the OpenMP pool (decided once)
_twins: dict[int, object] = {}
_lock = threading.Lock()
_warned_cache_dir = False


def _after_fork_in_child() -> None:
    global _forked, _serial, _twins, _launch_lock, _lock
    _forked, _serial, _twins = True, None, {}
    # a lock another thread of the parent held at the fork would stay held here forever
    _launch_lock, _lock = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _numba_cache_dir_reason() -> str | None:
    configured = numba_config.CACHE_DIR
    if not configured:
        return None
    return untrusted_reason(Path(configured))


def njit_cached(**options):
    """``numba.njit(cache=True, **options)``, without the disk cache where it cannot or
    must not be used (see the module docstring)."""
    def decorate(fn):
        global _warned_cache_dir
        reason = _numba_cache_dir_reason()
        if reason is not None:
            if not _warned_cache_dir:
                _warned_cache_dir = True
                warnings.warn(f"optforge: not using NUMBA_CACHE_DIR={numba_config.CACHE_DIR}: "
                              f"{reason}; optforge's kernels compile without a disk cache",
                              RuntimeWarning, stacklevel=2)
            return numba.njit(**options)(fn)
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            return numba.njit(**options)(fn)
    return decorate


def prepare() -> None:
    """Ask for a fork-safe threading layer before Numba starts one: call before anything
    that starts Numba's threads (a parallel launch, ``numba.get_num_threads``)."""
    global _layer_chosen
    if _layer_chosen:
        return
    _layer_chosen = True
    if parallel._is_initialized:
        return  # a layer already running: keep it
    if "NUMBA_THREADING_LAYER" in os.environ:  # the user's choice: keep it, findable
        if os.environ["NUMBA_THREADING_LAYER"].lower() in ("tbb", "safe", "forksafe",
                                                            "threadsafe"):
            _preload_tbb()
        return
    if str(numba_config.THREADING_LAYER).lower() == "default":
        if _torch_uses_openmp():
            numba_config.THREADING_LAYER = "omp"  # torch's own pool (module docstring)
        else:
            _preload_tbb()
            numba_config.THREADING_LAYER = "forksafe"


def _torch_uses_openmp() -> bool:
    """True where torch's intra-op parallelism is GNU OpenMP (libgomp already loaded by
    torch, so Numba's OpenMP layer joins the same runtime)."""
    import torch
    info = torch.__config__.parallel_info()
    return "ATen parallel backend: OpenMP" in info and _libgomp_loaded()


def _libgomp_loaded() -> bool:
    """GNU OpenMP (not Intel's or LLVM's) is what this process has mapped."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def _preload_tbb() -> bool:
    """Load pip's ``libtbb.so.12`` by path, so that Numba's TBB layer (which opens it by
    name) finds it; False where there is none (Numba then picks workqueue)."""
    import ctypes
    import site
    import sys
    if not sys.platform.startswith("linux"):
        return False
    for prefix in (sys.prefix, site.getuserbase()):
        lib = Path(prefix) / "lib" / "libtbb.so.12"
        if lib.is_file():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


_layer: str | None = None


def _active_layer() -> str | None:
    global _layer
    if _layer is None:
        try:
            _layer = numba.threading_layer()  # fixed for the process once started
        except ValueError:  # no parallel kernel has run in this process (or its parent)
            return None
    return _layer


def threads_for_this_call(total: int, parallel_min: int) -> int:
    """Numba's thread count for this thread's next launch: all of them for ``total`` of
    at least ``parallel_min`` elements, else 1 (waking the pool costs more than a small
    kernel). Returns the count to restore afterwards with ``restore_threads``, or 0 where
    nothing was changed. Once the pool runs, Numba's own ctypes getter and setter are
    called directly: its public wrappers re-take the layer's init locks and validate the
    argument on every call, ~4 us a launch, a tenth of a small step."""
    if total >= parallel_min:
        return 0
    if not _layer_chosen:
        prepare()  # before the pool starts: the fork-safe layer
    if not parallel._is_initialized:
        threads = numba.get_num_threads()  # starts the pool
    else:
        threads = parallel._get_num_threads()
    if threads <= 1:
        return 0
    parallel._set_num_threads(1)  # per calling thread in Numba
    return threads


def restore_threads(threads: int) -> None:
    """Undo ``threads_for_this_call`` (``threads``: what it returned)."""
    if threads:
        parallel._set_num_threads(threads)


def run_parallel(fn, *args):
    """Call the Numba dispatcher ``fn``: with a fork-safe layer chosen first, under the
    lock when that layer is workqueue, as its serial twin in a forked OpenMP child."""
    if not _layer_chosen:
        prepare()
    if _forked:
        fn = fork_safe(fn)
    # (module globals tested inline: this runs on every launch of every step)
    if (_layer or _active_layer()) in (None, "workqueue") and fn.targetoptions.get("parallel"):
        with _launch_lock:
            return fn(*args)
    return fn(*args)


def _must_be_serial() -> bool:
    """True in the child of a fork whose parent had started GNU OpenMP's thread pool."""
    global _serial
    if _serial is None:
        # the layer the parent initialised, if any (none: this process may start one)
        _serial = _active_layer() == "omp"
    return _serial


def fork_safe(fn):
    """``fn`` (a Numba dispatcher), or its serial twin where a parallel launch would
    kill the process (the child of a fork after OpenMP was used)."""
    if not _forked or not fn.targetoptions.get("parallel") or not _must_be_serial():
        return fn
    found = _twins.get(id(fn))
    if found is None:
        with _lock:
            found = _twins.get(id(fn))
            if found is None:
                options = {k: v for k, v in fn.targetoptions.items()
                           if k not in ("parallel", "nopython")}
                # not cached on disk: Numba's index keys entries by function and
                # signature, not by ``parallel``, so the twin would replace the kernel.
                # ``fn`` is kept with its twin so that its id is never reused.
                found = _twins[id(fn)] = (numba.njit(**options)(fn.py_func), fn)
    return found[0]
