"""docs/migration.md: every Python block runs, each in a fresh namespace, and the names
its tables promise exist in optforge."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import optforge

PAGE = Path(__file__).resolve().parent.parent / "docs" / "migration.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_examples_for_every_library():
    text = PAGE.read_text()
    for heading in ("torch.optim", "pytorch-optimizer", "optax", "HeavyBall"):
        assert f"## From {heading}" in text
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{k}" for k in range(len(BLOCKS))])
def test_every_example_runs(code):
    torch.manual_seed(0)
    exec(compile(code, str(PAGE), "exec"), {"__name__": "migration_example"})


def test_every_optforge_name_in_the_tables_exists():
    names = set(re.findall(r"`optforge\.(\w+)", PAGE.read_text()))
    missing = sorted(n for n in names if not hasattr(optforge, n))
    assert not missing, missing


def test_get_and_create_optimizer_errors_are_clear():
    with pytest.raises(ValueError, match="no catalogue optimizer 'adamm' \\(did you mean"):
        optforge.get("adamm")
    assert optforge.get("Frank-Wolfe_L1") is optforge.FrankWolfeL1
    with pytest.raises(TypeError, match="FTRL has no weight_decay hyperparameter"):
        optforge.create_optimizer(torch.nn.Linear(2, 2), "ftrl", weight_decay=0.1)
