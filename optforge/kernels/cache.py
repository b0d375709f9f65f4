"""Generated source -> a real .py file on disk -> an imported module, once per process.

The file name is a hash of the source and the library versions, so a changed
printer or library never reuses a stale file. Files are written atomically
(temporary file + rename), so a reader never sees half a file and two processes
writing the same kernel both succeed. Modules are registered in ``sys.modules``:
compiled Triton and Numba's ``cache=True`` both need a real, importable module.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from types import ModuleType

_lock = threading.Lock()


# Libraries whose version changes what a generated file means or how it compiles.
# Read from the installed metadata: no import (numba alone takes ~0.4 s to import).
_LIBRARIES = ("sympy", "numpy", "numba", "llvmlite", "torch", "triton")


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    from .. import __version__
    found = []
    for lib in _LIBRARIES:
        try:
            found.append(f"{lib}={metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            found.append(f"{lib}=none")
    return f"optforge={__version__};{';'.join(found)};py={sys.version_info[:2]}"


def cache_dir() -> Path:
    """``$OPTFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/optforge``, else ``~/.cache/optforge``."""
    explicit = os.environ.get("OPTFORGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optforge"


def _writable_dir() -> Path:
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"optforge-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def module_name(source: str, kind: str) -> str:
    digest = hashlib.sha256((_versions() + "\n" + source).encode()).hexdigest()[:20]
    return f"optforge_gen_{kind}_{digest}"


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_module(source: str, kind: str) -> ModuleType:
    """Import ``source`` as a module (written to the cache directory if not already there).

    A file whose content differs from ``source`` (corrupted, truncated, edited) is
    rewritten before import.
    """
    name = module_name(source, kind)
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        path = _writable_dir() / f"{name}.py"
        try:
            intact = path.read_text() == source
        except (OSError, UnicodeDecodeError):
            intact = False
        if not intact:
            _write_atomically(path, source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
