"""docs/dsl.md names every public symbol of optforge.dsl (a new DSL function without a
line in the reference fails here)."""
import re
from pathlib import Path

import optforge.dsl

DOC = (Path(__file__).resolve().parents[2] / "docs" / "dsl.md").read_text()


def test_every_public_dsl_name_is_documented():
    missing = [name for name in optforge.dsl.__all__
               if not re.search(rf"\b{re.escape(name)}\b", DOC)]
    assert missing == []
