"""Statement scaffolding for generated modules (string.Template files)."""
from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **fields: str) -> str:
    """Fill ``<name>.tmpl`` from this package; a missing field is an error, not a blank."""
    text = resources.files(__package__).joinpath(f"{name}.tmpl").read_text()
    return Template(text).substitute(**fields)
