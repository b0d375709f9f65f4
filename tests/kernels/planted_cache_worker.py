"""Two roles for test_two_users.py, each run in its own process.

``plant`` (run as another user): compile one numba-backend SGD step into
``$OPTFORGE_CACHE_DIR``, then turn what is there into traps: every generated ``.py``
gets a ``__pycache__`` ``.pyc`` that claims to be its bytecode (same source mtime and
size in the header) but writes ``$MARKER.pyc``; every Numba index becomes a pickle
that writes ``$MARKER.nbi`` when loaded. The files stay readable by everyone.

``step`` (run as the victim): one numba-backend SGD step; prints a JSON report.
"""
import importlib.util
import json
import os
import pickle
import sys
from importlib._bootstrap_external import _code_to_timestamp_pyc
from pathlib import Path

import torch

import optforge


def _step() -> bool:
    p = torch.nn.Parameter(torch.linspace(-1, 1, 4097))
    p.grad = torch.linspace(2, 3, 4097)
    expected = p.detach() - 0.5 * p.grad
    optforge.SGD([p], lr=0.5, backend="numba").step()
    return bool(torch.equal(p.detach(), expected))


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('planted code ran')",)


def plant(cache: Path, marker: str) -> None:
    assert _step()
    trap = f"open({marker + '.pyc'!r}, 'w').write('planted code ran')\n"
    for source in cache.glob("*.py"):
        st = source.stat()
        code = compile(trap, str(source), "exec")
        pyc = Path(importlib.util.cache_from_source(str(source)))
        pyc.parent.mkdir(exist_ok=True)
        pyc.write_bytes(_code_to_timestamp_pyc(code, st.st_mtime, st.st_size))
    indexes = list(cache.glob("__pycache__/*.nbi"))
    assert indexes, "numba wrote no index to plant"
    for index in indexes:
        index.write_bytes(pickle.dumps(_Payload(marker + ".nbi")))
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


if __name__ == "__main__":
    if sys.argv[1] == "plant":
        plant(Path(os.environ["OPTFORGE_CACHE_DIR"]), os.environ["MARKER"])
    else:
        print(json.dumps({"ok": _step()}))
