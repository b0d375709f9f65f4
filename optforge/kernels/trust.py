"""Whether a directory may hold code this process will run: ours, and private.

Numba's on-disk cache keeps a *pickled* index next to each generated module, and
unpickling runs code; Python would run a ``.pyc`` it finds in ``__pycache__``. So
whoever can write to the kernel cache directory, or replace it, can make optforge
run their code. A directory is trusted only when

* it and its ``__pycache__`` (when present) belong to this user and are not writable
  by group or others, and
* no directory above it can be used to swap it: each ancestor belongs to this user or
  root and is not writable by group or others, unless it is sticky (``/tmp``: others
  may create entries there, but not rename or delete ours).

This is the check OpenSSH makes of ``~/.ssh``. The answer is a reason to refuse
(a sentence for the warning), or None.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_LOOSE = stat.S_IWGRP | stat.S_IWOTH


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the leaf at mode 0700; an existing
    directory is left as it is (``untrusted_reason`` judges it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; be exact


def _describe(st: os.stat_result) -> str:
    return f"owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}"


def untrusted_reason(path: Path) -> str | None:
    """Why ``path`` must not hold code we run, or None when it is ours and private."""
    uid = os.geteuid()
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot inspect it ({exc})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != uid:
        return f"it belongs to another user ({_describe(st)}; this process runs as uid {uid})"
    if st.st_mode & _LOOSE:
        return (f"it is writable by group or others ({_describe(st)}); "
                f"`chmod 700 {path}` makes it usable again")
    inner = path / "__pycache__"  # where numba keeps its index: the same rule
    try:
        st = os.lstat(inner)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return f"cannot inspect {inner} ({exc})"
    else:
        if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or st.st_mode & _LOOSE:
            return f"{inner} is not private ({_describe(st)})"
    return _ancestor_reason(Path(os.path.realpath(path)).parent, uid)


def _ancestor_reason(folder: Path, uid: int) -> str | None:
    for parent in (folder, *folder.parents):
        try:
            st = os.stat(parent)
        except OSError as exc:
            return f"cannot inspect {parent} ({exc})"
        if st.st_uid not in (uid, 0):
            return f"{parent} above it belongs to another user ({_describe(st)})"
        if st.st_mode & _LOOSE and not st.st_mode & stat.S_ISVTX:
            return (f"{parent} above it is writable by group or others without the sticky "
                    f"bit ({_describe(st)}), so the directory could be replaced")
    return None
