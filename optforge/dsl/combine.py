"""``chain(t1, t2, ...)``: compose transforms into ONE rule function.

The result is an ordinary rule function (its signature lists every transform's
hyperparameters), so ``Optimizer(params, chain(...))``, ``RuleSpec``, variants and
``optforge show`` treat it like a hand-written rule, and it compiles to one kernel.
"""
from __future__ import annotations

import functools
import inspect

from .errors import DSLError
from .rule import Rule
from .symbols import grad, param, state
from .transforms import Transform, cautious_mask, cautious_step


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


def cautious(rule=None):
    """The Cautious modification of any rule (Liang et al. 2024, arXiv:2411.16085).

    ``cautious(rule_fn)`` is a rule function whose step ``p_new - p`` is masked where
    it would move against the gradient (``cautious_mask``); states are unchanged.
    ``cautious()`` is the same as a transform, for ``chain(...)``: placed before
    ``add_decayed_weights`` it leaves weight decay unmasked, as C-AdamW does.
    """
    if rule is None:
        return cautious_step()
    fn = getattr(rule, "fn", rule)  # a RuleSpec or a catalogue class's rule
    if not callable(fn):
        raise DSLError(f"cautious(): {rule!r} is not a rule function")

    @functools.wraps(fn)
    def wrapped(**hyper):
        inner = fn(**hyper)
        if not isinstance(inner, Rule):
            raise DSLError(f"cautious(): rule {fn.__name__!r} returned "
                           f"{type(inner).__name__}, not Rule(...)")
        p = param()
        descent = p - inner.param  # the step is -descent; cautious keeps descent * g > 0
        return Rule(p - descent * cautious_mask(descent, grad()), **inner.updates)

    wrapped.__name__ = wrapped.__qualname__ = f"cautious_{fn.__name__}"
    return wrapped


def with_ema(rule, decay=0.999, name="param_ema"):
    """``rule`` plus an exponential moving average of the weights (Polyak averaging).

    The average is a state (``name``, starting at the parameter) updated in the same
    kernel after the step: ``ema <- ema_decay * ema + (1 - ema_decay) * p_new``;
    ``ema_decay`` is a new hyperparameter. ``optforge.swap_ema(optimizer)`` evaluates
    with the averaged weights.
    """
    fn = getattr(rule, "fn", rule)
    if not callable(fn):
        raise DSLError(f"with_ema(): {rule!r} is not a rule function")
    signature = inspect.signature(fn)
    if "ema_decay" in signature.parameters:
        raise DSLError(f"with_ema(): rule {fn.__name__!r} already has a hyperparameter "
                       "'ema_decay'")

    def wrapped(**hyper):
        ema_decay = hyper.pop("ema_decay")
        inner = fn(**hyper)
        if not isinstance(inner, Rule):
            raise DSLError(f"with_ema(): rule {fn.__name__!r} returned "
                           f"{type(inner).__name__}, not Rule(...)")
        average = state(name, init=param())
        return Rule(inner.param, **inner.updates,
                    **{name: ema_decay * average + (1 - ema_decay) * inner.param})

    wrapped.__name__ = wrapped.__qualname__ = f"{fn.__name__}_with_ema"
    wrapped.__signature__ = signature.replace(parameters=[
        *signature.parameters.values(),
        inspect.Parameter("ema_decay", inspect.Parameter.KEYWORD_ONLY, default=decay)])
    zero = getattr(fn, "_optforge_zero_specialized", None)
    if zero:
        wrapped._optforge_zero_specialized = zero
    return wrapped
