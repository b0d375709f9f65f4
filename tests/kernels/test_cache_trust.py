"""The kernel cache runs only code this process generated, from directories that are
ours and private, and a cache that cannot be written never stops a step."""
import errno
import os
import stat
import tempfile
import uuid
from importlib._bootstrap_external import _code_to_timestamp_pyc
from importlib.util import cache_from_source
from pathlib import Path

import pytest
import torch

import optforge
from optforge.kernels import cache
from optforge.kernels.trust import untrusted_reason


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cache configured under tmp_path, chosen afresh (the choice is per process)."""
    monkeypatch.setattr(cache, "_chosen", {})
    monkeypatch.setenv("OPTFORGE_CACHE_DIR", str(tmp_path / "home" / "optforge"))
    return tmp_path / "home" / "optforge"


def _unique_source(body: str = "") -> str:
    return f"# test module {uuid.uuid4().hex}\nVALUE = 41 + 1\n{body}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cache_directory_is_created_private(fresh):
    module = cache.load_module(_unique_source(), "test")
    assert Path(module.__file__).parent == fresh
    assert _mode(fresh) == 0o700


def test_a_planted_pyc_next_to_an_intact_source_never_runs(fresh, tmp_path):
    source = _unique_source()
    fresh.mkdir(parents=True, mode=0o700)
    path = fresh / f"{cache.module_name(source, 'test')}.py"
    path.write_text(source)  # exactly what optforge would write
    marker = tmp_path / "ran"
    trap = compile(f"open({str(marker)!r}, 'w').write('x')\nVALUE = 0\n", str(path), "exec")
    pyc = Path(cache_from_source(str(path)))
    pyc.parent.mkdir()
    st = path.stat()
    pyc.write_bytes(_code_to_timestamp_pyc(trap, st.st_mtime, st.st_size))
    module = cache.load_module(source, "test")
    assert not marker.exists()
    assert module.VALUE == 42


def test_an_edited_source_file_is_replaced_before_it_runs(fresh, tmp_path):
    source = _unique_source()
    fresh.mkdir(parents=True, mode=0o700)
    path = fresh / f"{cache.module_name(source, 'test')}.py"
    path.write_bytes(b"VALUE = 0\n\x00\xff binary")
    assert cache.load_module(source, "test").VALUE == 42
    assert path.read_text() == source


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "pycache-writable"])
def test_a_directory_others_can_write_is_not_used(fresh, how):
    fresh.mkdir(parents=True)
    if how == "pycache-writable":  # where numba keeps its (pickled) index
        fresh.chmod(0o700)
        (fresh / "__pycache__").mkdir()
        (fresh / "__pycache__").chmod(0o777)
    else:
        fresh.chmod(0o770 if how == "group-writable" else 0o777)
    assert untrusted_reason(fresh) is not None
    with pytest.warns(RuntimeWarning, match="not using the kernel cache"):
        module = cache.load_module(_unique_source(), "test")
    used = Path(module.__file__).parent
    assert used != fresh and not list(fresh.glob("*.py"))
    assert _mode(used) == 0o700 and used.stat().st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_directory_of_another_user_is_not_used(fresh):
    fresh.mkdir(parents=True, mode=0o700)
    os.chown(fresh, 65534, 65534)
    assert "another user" in untrusted_reason(fresh)
    with pytest.warns(RuntimeWarning, match="belongs to another user"):
        module = cache.load_module(_unique_source(), "test")
    assert Path(module.__file__).parent != fresh


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_parent_of_another_user_makes_the_directory_untrusted(tmp_path):
    parent = tmp_path / "theirs"
    (parent / "optforge").mkdir(parents=True, mode=0o700)
    os.chown(parent, 65534, 65534)  # they could rename ours away and put theirs there
    assert "above it belongs to another user" in untrusted_reason(parent / "optforge")


def test_an_unusable_home_cache_falls_back_to_a_fresh_private_dir(monkeypatch, tmp_path):
    """Before: ``$TMPDIR/optforge-<uid>``, a name anyone can create first."""
    monkeypatch.setattr(cache, "_chosen", {})
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("OPTFORGE_CACHE_DIR", str(blocker / "optforge"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with pytest.warns(RuntimeWarning, match="cannot create the kernel cache"):
        module = cache.load_module(_unique_source(), "test")
    used = Path(module.__file__).parent
    assert not (tmp_path / f"optforge-{os.getuid()}").exists()
    assert used.parent == tmp_path and used.name.startswith("optforge-kernels-")
    assert _mode(used) == 0o700


def test_a_full_disk_gives_a_warning_and_a_working_step(fresh, monkeypatch):
    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cache, "_write_atomically", full)
    p = torch.nn.Parameter(torch.ones(5))
    p.grad = torch.full((5,), 2.0)
    opt = optforge.Optimizer([p], _fresh_rule(), lr=0.25, backend="torch")
    with pytest.warns(RuntimeWarning, match="compiled in memory"):
        opt.step()
    assert torch.equal(p.detach(), torch.full((5,), 0.5))


def _fresh_rule():
    """A rule whose generated modules no earlier test has loaded in this process."""
    from optforge.dsl import Rule, grad, param

    scale = 1.0 + uuid.uuid4().int % 1000 * 2.0**-40  # a new constant: new source text

    def plain_sgd(lr=0.1):
        p, g = param(), grad()
        return Rule(p - lr * g * scale)

    return plain_sgd


def test_a_numba_cache_dir_others_can_write_is_not_used(tmp_path, monkeypatch):
    """Numba's index is a pickle: a NUMBA_CACHE_DIR others can write could run their code."""
    from numba.core import config as numba_config

    from optforge.kernels.numba import jit

    shared = tmp_path / "numba"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(numba_config, "CACHE_DIR", str(shared))
    monkeypatch.setattr(jit, "_warned_cache_dir", False)
    with pytest.warns(RuntimeWarning, match="not using NUMBA_CACHE_DIR"):
        add_one = jit.njit_cached(nogil=True)(_add_one)
    assert add_one(1.5) == 2.5
    assert not list(shared.rglob("*"))  # nothing written there, so nothing read either


def _add_one(x):
    return x + 1
