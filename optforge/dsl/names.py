"""Rules by name: the catalogue's optimizers and the rules users register.

A param group's ``"rule"`` may be a name (``"AdamW"``), and checkpoints store group rules
by name so they load with ``torch.load(..., weights_only=True)``. The runtime resolves
names here; the catalogue registers its classes' rules here when they are defined. The
registry lives in the DSL layer so that neither the runtime nor the catalogue imports the
other for it; the package's ``__init__`` adds the one *loader* (import the catalogue) that
a lookup runs on a miss, so a name resolves even before anything imported the catalogue.
"""
from __future__ import annotations

import threading
from typing import Callable

from .spec import RuleSpec

_lock = threading.RLock()
_catalogue: dict[str, RuleSpec] = {}  # catalogue class name -> its rule
_registered: dict[str, RuleSpec] = {}  # register_rule(...) names
_loaders: list[Callable[[], None]] = []  # run once, on the first miss


def add_loader(load: Callable[[], None]) -> None:
    """``load()`` registers more names (imports the catalogue); run on the first miss."""
    with _lock:
        _loaders.append(load)


def _load_all() -> None:
    with _lock:
        loaders, _loaders[:] = list(_loaders), []
    for load in loaders:
        load()


def register_catalogue(name: str, spec: RuleSpec) -> None:
    """A catalogue optimizer's rule (called as its class is defined)."""
    with _lock:
        _catalogue[name] = spec


def register(name: str, spec: RuleSpec) -> None:
    """A user's rule under ``name``; a catalogue name or another rule's name is refused."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_rule: the name {name!r} is not a Python identifier")
    _load_all()  # a catalogue name must be known before it can be refused
    with _lock:
        taken = _catalogue.get(name)
        if taken is not None and taken.fn is not spec.fn:
            raise ValueError(f"register_rule: {name!r} is a catalogue optimizer's name")
        known = _registered.get(name)
        if known is not None and known.fn is not spec.fn:
            raise ValueError(f"register_rule: {name!r} is already registered for another "
                             f"rule ({known.fn!r})")
        _registered[name] = spec


def unregister(name: str) -> None:
    """Forget a ``register``-ed name (catalogue names stay)."""
    with _lock:
        _registered.pop(name, None)


def lookup(name: str) -> RuleSpec | None:
    """The rule registered (or in the catalogue) under ``name``, else None."""
    for attempt in range(2):
        with _lock:
            found = _registered.get(name) or _catalogue.get(name)
        if found is not None or attempt:
            return found
        _load_all()
    return None


def name_of(fn) -> str | None:
    """The name a rule function resolves under again: a registered name first, then a
    catalogue name; None for a function nobody named."""
    _load_all()
    with _lock:
        for table in (_registered, _catalogue):
            for name, spec in table.items():
                if spec.fn is fn:
                    return name
    return None


def catalogue_name(fn) -> str | None:
    """The catalogue class name whose rule is ``fn``, else None."""
    _load_all()
    with _lock:
        return next((name for name, spec in _catalogue.items() if spec.fn is fn), None)


def known_names() -> list[str]:
    _load_all()
    with _lock:
        return sorted({*_catalogue, *_registered})
