"""Every backend the runtime can choose from, by name: one explicit list, no import-time
self-registration. A backend outside optforge joins with ``register`` (see README.md)."""
from __future__ import annotations

import threading

from .numba.backend import NUMBA
from .protocol import Backend
from .torch_backend import TORCH
from .triton.backend import TRITON

# Insertion order is the tie-break of "auto" among equal ranks (protocol.Backend).
BACKENDS: dict[str, Backend] = {b.name: b for b in (TRITON, NUMBA, TORCH)}
_lock = threading.Lock()


def register(backend: Backend) -> Backend:
    """Add ``backend`` under its name; a name already taken is refused (replacing a
    backend that compiled rules hold launchers of would mix two implementations)."""
    if not isinstance(backend, Backend):
        raise TypeError(f"register() takes a kernels.protocol.Backend, got "
                        f"{type(backend).__name__}")
    if not backend.name.isidentifier() or backend.name == "auto":
        raise ValueError(f"backend name {backend.name!r}: use an identifier other than 'auto'")
    with _lock:
        if backend.name in BACKENDS:
            raise ValueError(f"a backend named {backend.name!r} is already registered")
        BACKENDS[backend.name] = backend
    return backend
