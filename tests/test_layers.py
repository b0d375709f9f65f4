"""The package's layers point down: dsl -> compiler -> kernels -> runtime -> distributed ->
catalogue -> multistep -> cli. A module may import from its own layer and the layers before it, never
from a later one; dsl/ and compiler/ import no torch, numba or triton (dsl: what a rule
is; compiler: how it becomes code, touching no device)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "optforge"
LAYERS = ["dsl", "compiler", "kernels", "runtime", "distributed", "catalogue", "multistep",
          "cli"]
TOP_LEVEL_CLI = {"cli", "demo", "__main__"}  # optforge/cli.py and friends sit on top
DEVICE_LIBRARIES = {"torch", "numba", "triton", "numpy"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "optforge" or len(parts) < 2:
        return None
    return "cli" if parts[1] in TOP_LEVEL_CLI else parts[1] if parts[1] in LAYERS else None


def _module_name(path: Path) -> tuple[str, str]:
    """(module, the package relative imports start from)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def _imports(path: Path, package: str):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module or ""
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, package = _module_name(path)
        mine = _layer(module)
        if mine is None:
            continue
        for line, target in _imports(path, package):
            theirs = _layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                found.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
            if mine in ("dsl", "compiler") and target.split(".")[0] in DEVICE_LIBRARIES:
                found.append(f"{module}:{line} ({mine}) imports {target}")
    return found


def test_dependencies_point_down():
    assert _violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a planted upward import is reported."""
    fake = tmp_path / "optforge"
    (fake / "dsl").mkdir(parents=True)
    (fake / "dsl" / "bad.py").write_text("from ..runtime import Optimizer\nimport torch\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations() == ["optforge.dsl.bad:1 (dsl) imports optforge.runtime (runtime)",
                             "optforge.dsl.bad:2 (dsl) imports torch"]


@pytest.mark.parametrize("module", ["optforge.dsl", "optforge.compiler"])
def test_the_math_layers_load_without_device_libraries(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{sorted(DEVICE_LIBRARIES)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import {module} loaded {out}"


def test_public_names_resolve_lazily():
    import optforge

    assert optforge.AdamW is optforge.CATALOGUE["AdamW"]
    assert {"Optimizer", "chain", "AdamW", "Muon", "NewtonCG"} <= set(optforge.__all__)
    assert "AdamW" in dir(optforge)
    with pytest.raises(AttributeError, match="no attribute 'AdamX'"):
        optforge.AdamX  # noqa: B018


def test_a_rule_name_resolves_without_importing_the_catalogue_first():
    """The runtime finds "AdamW" through optforge.dsl.names, whose loader (added by the
    package) imports the catalogue on the first miss: no runtime -> catalogue import."""
    code = ("import sys; from optforge.runtime.routing import resolve_rule; "
            "before = 'optforge.catalogue' in sys.modules; "
            "print(before, resolve_rule('AdamW', 'test').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False AdamW"
