"""Serial kernels over a range of blocks, spread over threads by optforge, not by Numba.

The kernels of rules with reductions (``compiler/printers/numba_reduce.py``) are compiled
with ``parallel=False`` and take ``(b0, b1, ...)``: they run the blocks ``b0 <= b < b1``
of the block table. Numba's parallel compilation (parfor analysis, gufunc lowering)
costs about twice the serial one, and these kernels are large: AdamP's three kernels
compiled in 5.6 s as prange kernels, 2.6 s serial (2-core EPYC). ``run_block_ranges``
cuts the blocks into one contiguous range per thread and runs them on a small thread
pool, the calling thread taking the first; the kernels are ``nogil``, so the ranges run
at the same time. Each block writes only its own outputs (its partials, its row
segments, its columns), so the split changes no bits: the results are those of one
serial pass over the blocks, whatever the thread count.

Fork and thread safety: the pool is made lazily and dropped in the child of a fork (its
threads do not exist there); ``ThreadPoolExecutor`` takes work from any thread, and a
kernel never calls back into Python, so launches from several threads cannot deadlock.
No Numba threading layer is involved (GNU OpenMP's fork problem does not arise).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_threads = 0
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _pool, _pool_threads, _lock
    _pool, _pool_threads, _lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads (grown, never shrunk: a smaller thread
    count asked later just uses fewer of them)."""
    global _pool, _pool_threads
    with _lock:
        if _pool is None or _pool_threads < workers:
            old = _pool
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="optforge-numba")
            _pool_threads = workers
            if old is not None:
                old.shutdown(wait=False)  # running ranges finish; the new pool takes over
        return _pool


def ranges(n_blocks: int, threads: int) -> list[tuple[int, int]]:
    """``threads`` contiguous ranges covering ``0..n_blocks`` (sizes differ by <= 1)."""
    threads = max(1, min(threads, n_blocks))
    base, extra = divmod(n_blocks, threads)
    out, lo = [], 0
    for k in range(threads):
        hi = lo + base + (1 if k < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def run_block_ranges(fn, n_blocks: int, args: tuple, threads: int) -> None:
    """``fn(b0, b1, *args)`` over ``threads`` ranges of ``n_blocks`` blocks, the first on
    the calling thread; returns when all are done (and raises what any of them raised)."""
    parts = ranges(n_blocks, threads)
    if len(parts) <= 1:
        fn(0, n_blocks, *args)
        return
    pool = _executor(len(parts) - 1)
    futures = [pool.submit(fn, lo, hi, *args) for lo, hi in parts[1:]]
    try:
        fn(*parts[0], *args)
    finally:
        for f in futures:
            f.result()
