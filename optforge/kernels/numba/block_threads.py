"""Serial kernels over a range of blocks, spread over threads by optforge, not by Numba.

The kernels of rules with reductions (``compiler/printers/numba_reduce.py``) are compiled
with ``parallel=False`` and take ``(b0, b1, ...)``: they run the blocks ``b0 <= b < b1``
of the block table. Numba's parallel compilation (parfor analysis, gufunc lowering)
costs about twice the serial one, and these kernels are large: AdamP's three kernels
compiled in 5.6 s as prange kernels, 2.6 s serial (2-core EPYC). ``run_block_ranges``
cuts the blocks into chunks that the calling thread and a small thread pool claim in
order; the kernels are ``nogil``, so the chunks run at the same time. Each block writes only its own outputs (its partials, its row
segments, its columns), so the split changes no bits: the results are those of one
serial pass over the blocks, whatever the thread count.

Fork and thread safety: the pool is made lazily and dropped in the child of a fork (its
threads do not exist there); ``ThreadPoolExecutor`` takes work from any thread, and a
kernel never calls back into Python, so launches from several threads cannot deadlock.
No Numba threading layer is involved (GNU OpenMP's fork problem does not arise).
"""
from __future__ import annotations

import itertools
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


CHUNK = 16  # the most blocks a thread claims at a time (1M elements: ~0.3 ms of work)


def chunks(n_blocks: int, threads: int) -> list[tuple[int, int]]:
    """Ranges covering ``0..n_blocks``: two per thread (each call costs a dispatch, ~10 us
    with a dozen array arguments), at most CHUNK blocks each (so that a thread that
    starts late leaves little to wait for)."""
    size = max(1, min(CHUNK, -(-n_blocks // (2 * max(1, threads)))))
    return [(lo, min(n_blocks, lo + size)) for lo in range(0, n_blocks, size)]


def run_block_ranges(fn, n_blocks: int, args: tuple, threads: int) -> None:
    """``fn(b0, b1, *args)`` over chunks of the ``n_blocks`` blocks, claimed in order by
    the calling thread and ``threads - 1`` pool threads; returns when all are done (and
    raises what any of them raised). Claiming, not a fixed split: on a busy machine a
    pool thread may wake late (a descheduled one held a fixed half-split step back by its
    whole half: LAMB at 1M, 1.1 -> 1.8 ms at load 8), and the caller then runs its share.
    ``next`` on one ``itertools.count`` is atomic under the GIL."""
    parts = chunks(n_blocks, threads)
    if threads <= 1 or len(parts) <= 1:
        fn(0, n_blocks, *args)
        return
    claim = itertools.count()

    def work() -> None:
        for k in iter(claim.__next__, None):
            if k >= len(parts):
                return
            fn(*parts[k], *args)

    pool = _executor(threads - 1)
    futures = [pool.submit(work) for _ in range(min(threads, len(parts)) - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()
