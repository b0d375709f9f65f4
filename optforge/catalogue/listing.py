"""``optforge list``: the catalogue as records (``--json``) and as 100-column text."""
from __future__ import annotations

import textwrap

from ._base import REGISTRY
from .families import FAMILIES, OTHER, check_family, did_you_mean, family_of, grouped

WIDTH = 100  # a terminal people actually have; the CLI test checks every line fits


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


def entry(name: str) -> dict:
    """One optimizer as a JSON-ready record (float32 parameters, default flags)."""
    cls = REGISTRY[name]
    t = cls.traffic()
    return {"name": name, "family": family_of(name),
            "summary": " ".join((cls.__doc__ or "").split()),
            "hyperparameters": {k: _json_value(v) for k, v in cls.rule.defaults.items()},
            "state_bytes_per_param": cls.state_bytes_per_param(),
            # the same states stored as bfloat16 (state_dtype="bfloat16")
            "state_bytes_per_param_bf16": cls.state_bytes_per_param(state_dtype="bfloat16"),
            # 8-bit block-wise states (state_dtype="int8", tensors of 4096+ elements)
            "state_bytes_per_param_int8": cls.state_bytes_per_param(state_dtype="int8"),
            "traffic_bytes_per_param": {"read": t.read, "written": t.written, "total": t.total},
            # states that are not per element (a row/column state: rows / cols values)
            "scoped_states": cls.scoped_states(),
            # every state of one (4096, 4096) float32 weight: Adafactor's are 4096 + 4096
            "state_bytes_4096x4096": cls.state_bytes((4096, 4096)),
            "source": cls.source}


def select(family: str | None = None, pattern: str | None = None) -> list[str]:
    """Registered names in ``family`` whose name contains ``pattern`` (any case).

    ValueError (with the closest names) when nothing matches: an empty listing would
    read as "optforge has no such optimizer" when the filter was merely misspelt.
    """
    names = list(REGISTRY)
    if family is not None:
        family = check_family(family)
        names = [n for n in names if family_of(n) == family]
    if pattern:
        found = [n for n in names if pattern.lower() in n.lower()]
        if not found:
            where = f" in family {family!r}" if family else ""
            raise ValueError(f"no optimizer name contains {pattern!r}{where}"
                             f"{did_you_mean(pattern, names)}")
        names = found
    return names


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False) or [indent.rstrip()]


def _scoped_note(record: dict) -> str:
    """"[+ per row: row_var; per col: col_var] " for states not per element."""
    by_scope: dict[str, list[str]] = {}
    for name, scope in record["scoped_states"].items():
        by_scope.setdefault(scope, []).append(name)
    if not by_scope:
        return ""
    return "[+ " + "; ".join(f"per {scope}: {', '.join(names)}"
                             for scope, names in by_scope.items()) + "] "


def render(names: list[str]) -> str:
    """Family headers, then per optimizer: name, state and traffic, hyperparameters and
    source wrapped under it. Every line is at most WIDTH characters."""
    records = {n: entry(n) for n in names}
    lines = []
    for family, members in grouped(names).items():
        what = FAMILIES[family][0] if family != OTHER else "not yet placed in a family"
        lines += _wrap(f"{family.upper()} ({len(members)}): {what}", "")
        lines.append("-" * min(WIDTH, max(len(x) for x in lines[-1:])))
        for name in members:
            r = records[name]
            t = r["traffic_bytes_per_param"]
            head = (f"  {name:<22} state {r['state_bytes_per_param']:>3} B/param   "
                    f"traffic {t['total']:>3} B/param   {_scoped_note(r)}{r['summary']}")
            lines += _wrap(head, "")[:1]
            rest = head[len(lines[-1]):].strip()
            if rest:
                lines += _wrap(rest, " " * 26)
            hypers = ", ".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}"
                               for k, v in REGISTRY[name].rule.defaults.items())
            lines += _wrap(hypers or "(no hyperparameters)", " " * 6)
            lines += _wrap("source: " + r["source"], " " * 6)
        lines.append("")
    lines += _wrap("State and traffic are bytes per float32 parameter element with default "
                   "flags. `optforge show NAME` prints a rule, `optforge latex NAME` its "
                   "formula, `optforge list --json` all of this for tools.", "")
    return "\n".join(lines)
