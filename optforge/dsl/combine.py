"""``chain(t1, t2, ...)``: compose transforms into ONE rule function.

The result is an ordinary rule function (its signature lists every transform's
hyperparameters), so ``Optimizer(params, chain(...))``, ``RuleSpec``, variants and
``optforge show`` treat it like a hand-written rule, and it compiles to one kernel.
"""
from __future__ import annotations

import inspect

from .errors import DSLError
from .rule import Rule
from .symbols import grad, param
from .transforms import Transform


def _check(transforms) -> dict:
    defaults: dict = {}
    owner: dict = {}
    for t in transforms:
        if not isinstance(t, Transform):
            raise DSLError(f"chain(): argument {t!r} is not a transform (did you forget to "
                           "call it, e.g. scale_by_adam() rather than scale_by_adam?)")
        for key, value in t.defaults.items():
            if key in defaults:
                raise DSLError(f"chain(): hyperparameter {key!r} is claimed by both "
                               f"{owner[key]} and {t.name}; give one of them another name")
            defaults[key], owner[key] = value, t.name
    return defaults


def chain(*transforms: Transform, name: str = "chain"):
    """A rule function applying ``transforms`` in order to the gradient; new p = p + update."""
    if not transforms:
        raise DSLError("chain() needs at least one transform")
    defaults = _check(transforms)

    def rule(**hyper):
        u, writes = grad(), {}
        for t in transforms:
            before = set(writes)
            mine = {key: hyper[key] for key in t.defaults}
            new_writes: dict = {}
            u = t.apply(u, mine, new_writes)
            clash = before & set(new_writes)
            if clash:
                raise DSLError(f"rule {name!r}: {t.name} writes state(s) {sorted(clash)} "
                               "that an earlier transform in the chain already writes")
            writes.update(new_writes)
        return Rule(param() + u, **writes)

    rule.__name__ = rule.__qualname__ = name
    rule.__signature__ = inspect.Signature([
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=value)
        for key, value in defaults.items()])
    rule.transforms = transforms
    return rule
