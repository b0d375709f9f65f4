"""Statement scaffolding for generated modules (string.Template files)."""
from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **fields: str) -> str:
    """Fill ``<name>.tmpl`` from this package; a missing field is an error, not a blank.

    ``rule`` (the rule's name, printed in comments) is escaped to printable ASCII: the
    DSL refuses names with line breaks, and a name that slipped past it still cannot
    end the comment and become code.
    """
    if "rule" in fields:
        fields["rule"] = fields["rule"].encode("unicode_escape").decode("ascii")
    text = resources.files(__package__).joinpath(f"{name}.tmpl").read_text()
    return Template(text).substitute(**fields)
