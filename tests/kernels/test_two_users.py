"""Another user cannot make optforge run their code through the kernel cache.

The attack: on a shared machine, another user creates the directory optforge would
fall back to when the home cache is unwritable (before: ``$TMPDIR/optforge-<uid>``, a
predictable name) and fills it with what optforge itself would write there, plus a
planted ``.pyc`` per module and a planted Numba index (a pickle: loading it runs
code). The victim then takes one numba-backend step. Needs root (to act as uid
65534 with ``setpriv``); skipped where the uid cannot be switched.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import optforge
from tests.kernels.other_user import OTHER, can_switch_uid

WORKER = Path(__file__).with_name("planted_cache_worker.py")
# the optforge under test (a checkout on PYTHONPATH), importable by the other user too
ROOT = Path(optforge.__file__).resolve().parents[1]


pytestmark = pytest.mark.skipif(not can_switch_uid(),
                                reason="needs root and setpriv to act as another user")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPTFORGE_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR", "TMPDIR")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def shared():
    """A world-writable sticky directory like /tmp (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="optforge-two-users-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_cache_planted_by_another_user_runs_no_code(shared):
    uid = os.geteuid()
    planted = shared / f"optforge-{uid}"  # the fallback name older versions used
    marker = str(shared / "PLANTED")
    other_home = shared / "other-home"
    other_home.mkdir()
    os.chown(other_home, 65534, 65534)
    attacker = subprocess.run(
        [*OTHER, sys.executable, str(WORKER), "plant"], capture_output=True, text=True, check=False,
        timeout=600, cwd="/", env=_env(OPTFORGE_CACHE_DIR=str(planted), MARKER=marker,
                                       HOME=str(other_home)))
    assert attacker.returncode == 0, attacker.stderr[-3000:]
    assert planted.stat().st_uid == 65534
    assert list(planted.glob("__pycache__/*.pyc")) and list(planted.glob("__pycache__/*.nbi"))

    home_file = shared / "not-a-directory"
    home_file.write_text("")  # the home cache cannot be created: the fallback is taken
    victim = subprocess.run(
        [sys.executable, "-W", "always", str(WORKER), "step"], capture_output=True,
        text=True, check=False, timeout=600, cwd="/",
        env=_env(TMPDIR=str(shared), XDG_CACHE_HOME=str(home_file / "cache")))
    ran = sorted(p.name for p in shared.glob("PLANTED*"))
    assert ran == [], f"planted code ran in the victim's process: {ran}"
    assert victim.returncode == 0, victim.stderr[-3000:]
    assert json.loads(victim.stdout.strip().splitlines()[-1]) == {"ok": True}
    assert "private directory" in victim.stderr  # the warning says where kernels went
