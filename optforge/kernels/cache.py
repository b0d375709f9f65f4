"""Generated source -> a real .py file in a private directory -> a module, once per process.

The file name is a hash of the source and the library versions, so a changed
printer or library never reuses a stale file. Files are written atomically
(temporary file + rename), so a reader never sees half a file and two processes
writing the same kernel both succeed. Modules are registered in ``sys.modules``:
compiled Triton and Numba's ``cache=True`` both need a real, importable module.

Nothing in the directory is trusted that this process did not check (see
``trust.py``): the code executed is always compiled from the source string this
process generated (the file is compared with it byte for byte and rewritten when it
differs; a ``__pycache__/*.pyc`` is never read), and the directory itself, where
Numba keeps its pickled index, is used only when it is owned by this user and
writable by nobody else. Otherwise, and when the directory cannot be written
(read-only, full disk), kernels go to a fresh ``mkdtemp`` directory, or are
compiled in memory as a last resort: one warning, never an error mid-training.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import linecache
import os
import shutil
import sys
import tempfile
import threading
import warnings
from importlib import metadata
from pathlib import Path
from types import ModuleType

from .trust import make_private_dir, untrusted_reason

_lock = threading.Lock()

# Libraries whose version changes what a generated file means or how it compiles.
# Read from the installed metadata: no import (numba alone takes ~0.4 s to import).
_LIBRARIES = ("sympy", "numpy", "numba", "llvmlite", "torch", "triton")

# configured cache path -> the directory actually used (None: in memory), per process
_chosen: dict[str, Path | None] = {}


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
    """``$OPTFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/optforge``, else ``~/.cache/optforge``
    (where the cache is configured to be; ``private_dir()`` is where it is used)."""
    explicit = os.environ.get("OPTFORGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optforge"


def _warn(message: str) -> None:
    warnings.warn(f"optforge: {message}", RuntimeWarning, stacklevel=4)


def _fresh_dir(why: str) -> Path | None:
    """A new private temporary directory (removed at exit), or None: compile in memory."""
    try:
        path = Path(tempfile.mkdtemp(prefix="optforge-kernels-"))  # 0700, unguessable name
    except OSError as exc:
        _warn(f"{why}; no temporary directory either ({exc}): kernels are compiled in "
              "memory (Numba compiles afresh in every process)")
        return None
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    _warn(f"{why}; this process uses the private directory {path} instead (removed at "
          "exit, so kernels compile afresh in every process)")
    return path


def private_dir() -> Path | None:
    """The directory kernels are written to: the configured cache when it is ours and
    private, else a fresh private temporary one; None when nothing can be written."""
    with _lock:
        return _current()


def _current() -> Path | None:
    """``private_dir()`` with ``_lock`` held: chosen once per configured path."""
    key = str(cache_dir())
    if key not in _chosen:
        _chosen[key] = _choose(Path(key))
    return _chosen[key]


def _choose(path: Path) -> Path | None:
    try:
        make_private_dir(path)
    except OSError as exc:
        return _fresh_dir(f"cannot create the kernel cache {path} ({exc})")
    reason = untrusted_reason(path)
    if reason is None and not os.access(path, os.W_OK):
        reason = "not writable"
    if reason is not None:
        return _fresh_dir(f"not using the kernel cache {path}: {reason}")
    return path


def _give_up_dir(path: Path, exc: OSError) -> None:
    """A write into the chosen directory failed (disk full, made read-only): the
    configured cache is replaced by a fresh directory, a fresh one by memory."""
    for key, used in _chosen.items():
        if used != path:
            continue
        if Path(key) == path:
            _chosen[key] = _fresh_dir(f"cannot write to the kernel cache {path} ({exc})")
        else:
            _warn(f"cannot write to {path} either ({exc}): kernels are compiled in memory")
            _chosen[key] = None


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


def _source_file(name: str, source: str) -> Path | None:
    """The file holding exactly ``source`` (written when absent or different), or None
    when no directory can take it. Called with ``_lock`` held."""
    while True:  # the configured dir, a fresh one, then memory: at most three tries
        folder = _current()
        if folder is None:
            return None
        path = folder / f"{name}.py"
        try:
            intact = path.read_text() == source
        except (OSError, UnicodeDecodeError):
            intact = False
        if intact:
            return path
        try:
            _write_atomically(path, source)
            return path
        except OSError as exc:
            _give_up_dir(folder, exc)


def load_module(source: str, kind: str) -> ModuleType:
    """The module of ``source``, compiled from ``source`` itself (never from bytecode on
    disk) with its file written next to it for Numba's cache and Triton's inspection.

    A file whose content differs from ``source`` (corrupted, truncated, edited) is
    rewritten before use; the code run is ``source`` in every case.
    """
    name = module_name(source, kind)
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        path = _source_file(name, source)
        filename = str(path) if path is not None else f"<optforge-generated {name}>"
        if path is None:  # tracebacks and inspect.getsource (Triton) read it from here
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = ModuleType(name)
        module.__file__ = filename
        code = compile(source, filename, "exec", dont_inherit=True)
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)  # noqa: S102 - our own generated, hash-named source
        except BaseException:
            del sys.modules[name]
            raise
        return module
