"""Pause Python's cyclic garbage collector while an optimizer does first-use work.

Why: an optimizer's first step in a fresh process imports numba, loads kernels from
numba's on-disk cache (which fills numba's typing and target registries) and builds
the rule with SymPy: a few hundred thousand new Python objects in a burst. Each burst
sets off collections, and once torch is imported every full collection walks torch's
~375k long-lived objects. Measured on the 2-core AMD EPYC (fresh process, warm disk
cache, AdamW on 1M params, 3 runs each): construct + first step 0.46-0.47 s with the
collector running, 0.25-0.31 s with it paused; the objects made meanwhile are then
collected once, at the next allocation burst (the second step took 54-76 ms instead
of ~1 ms), so the first two steps together still save ~0.1 s. The collector is only
paused, never asked to collect: nothing is freed later than it would be otherwise.
"""
from __future__ import annotations

import contextlib
import gc


_NOTHING = contextlib.nullcontext()  # reusable: every later step takes this one


def gc_paused(active: bool = True):
    """Disable automatic collection inside the block when ``active`` and it was on."""
    if not (active and gc.isenabled()):
        return _NOTHING
    return _paused()


@contextlib.contextmanager
def _paused():
    try:
        gc.disable()  # inside the try: an interrupt right after it still re-enables
        yield
    finally:
        gc.enable()
