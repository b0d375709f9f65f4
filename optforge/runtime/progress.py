"""Say so when an optimizer's first step pauses to compile.

A first step in a fresh process builds the rule with SymPy and compiles its kernels
(numba's JIT, or triton's): up to ~18 s for a matrix rule on a 2-core machine, against
about a millisecond for the steps after it. A silent pause of that length reads as a
hang, so a timer logs what is compiling once the step has run for ``SLOW_AFTER_S``,
and how long it took when it ends. Steps that finish sooner (the kernels were in the
on-disk cache) log nothing.

The messages go to the ``optforge`` logger at WARNING level, the level Python shows
without any logging set-up; ``logging.getLogger("optforge").setLevel(logging.ERROR)``
silences them.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

log = logging.getLogger("optforge")

SLOW_AFTER_S = 1.0


@contextlib.contextmanager
def announce_if_slow(describe: Callable[[], str],
                     after_s: float | None = None) -> Iterator[None]:
    """Log ``describe()`` if the block is still running after ``after_s`` seconds, and its
    total time when it ends. ``describe`` runs only then (in the timer thread)."""
    after_s = SLOW_AFTER_S if after_s is None else after_s
    start = time.perf_counter()
    fired = threading.Event()

    def notice():
        fired.set()
        log.warning("optforge: first step is compiling %s; later steps reuse the "
                    "kernels (and later runs the on-disk cache)", describe())

    timer = threading.Timer(after_s, notice)
    timer.daemon = True  # never keeps the interpreter alive
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # the notice, if it is being written, comes before "done"
        if fired.is_set():
            log.warning("optforge: compiled in %.1f s", time.perf_counter() - start)
