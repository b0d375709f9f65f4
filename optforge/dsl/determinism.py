"""A rule function must describe the same rule every time it runs.

A rule that calls a random number generator while it is built (``random.random()``,
``numpy.random.rand()``, ``torch.rand(())``) gets one draw, frozen into a constant of
every kernel: the user meant a random value per step and silently gets a fixed one.
The DSL cannot see which generator was called (and imports no numpy or torch), so it
builds the rule twice and compares: any difference is such a draw (or another
non-deterministic build: a clock, a counter) and is refused, naming the values that
differ. Per-step randomness is ``random_scalar(...)``.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError


def _parts(rule) -> dict[str, object]:
    parts = {f"the new value of state {k!r}" if k != "p" else "the new parameter": e
             for k, e in rule.outputs().items()}
    parts.update({f"the declaration of state {k!r}": d for k, d in rule.states.items()})
    parts["the random scalars"] = rule.randoms
    return parts


def _numbers(value) -> set:
    if isinstance(value, sp.Basic):
        return set(value.atoms(sp.Number))
    init = getattr(value, "init", None)
    return _numbers(init) if isinstance(init, sp.Basic) else set()


def check_deterministic(first, second) -> None:
    """Raise DSLError naming the first part of ``first`` that ``second`` builds otherwise."""
    a, b = _parts(first), _parts(second)
    for what in sorted(set(a) | set(b)):
        if a.get(what) == b.get(what):
            continue
        differ = sorted(_numbers(a.get(what)) ^ _numbers(b.get(what)), key=str)
        shown = ", ".join(str(x) for x in differ[:4]) or "its structure"
        raise DSLError(f"rule {first.name!r}: building it twice gave two rules ({what} "
                       f"differs: {shown}); the rule function calls a random number "
                       "generator (random, numpy.random, torch.rand...) or something else "
                       "that changes between calls, and one draw would be frozen into "
                       "the kernel as a constant. Use random_scalar(name) for a value "
                       "drawn each step")
