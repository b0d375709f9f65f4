"""Random scalars: one draw per param group and step, reproducible from a seed.

``random_scalar("xi", "exponential")`` is a scalar like a hyperparameter, except that
its value is drawn on the host before each step (random-scaled SGDM multiplies its
update by an Exp(1) draw). The draw is a pure function of (optimizer seed, group index,
step, name), so a run resumed from a checkpoint draws the same numbers, and no random
generator state has to be saved.
"""
from __future__ import annotations

import random

from .errors import DSLError
from .symbols import ScalarSymbol, _current_rule_name, active_context, is_reserved

DISTRIBUTIONS = {
    "exponential": lambda rng: rng.expovariate(1.0),  # Exp(1): mean 1
    "uniform": lambda rng: rng.random(),  # U[0, 1)
    "normal": lambda rng: rng.gauss(0.0, 1.0),  # N(0, 1)
    # a 24-bit integer (exact as the float32 scalar kernels receive): the Philox seed of
    # stochastic rounding (compiler/rounding.py)
    "seed24": lambda rng: float(rng.randrange(2**24)),
}


class RandomSymbol(ScalarSymbol):
    """A scalar drawn per group and step on the host."""


def random_scalar(name: str, distribution: str = "exponential") -> RandomSymbol:
    """Declare a random scalar drawn each step from ``distribution``."""
    rule = _current_rule_name()
    if distribution not in DISTRIBUTIONS:
        raise DSLError(f"rule {rule!r}: random_scalar({name!r}) has distribution "
                       f"{distribution!r}; supported: {sorted(DISTRIBUTIONS)}")
    if not isinstance(name, str) or not name.isidentifier() or is_reserved(name):
        raise DSLError(f"rule {rule!r}: random_scalar name {name!r} is not a free identifier")
    ctx = active_context()
    if ctx is not None:
        known = ctx.randoms.setdefault(name, distribution)
        if known != distribution:
            raise DSLError(f"rule {rule!r}: random scalar {name!r} declared with two "
                           f"distributions ({known}, {distribution})")
    return RandomSymbol(name, real=True)


def draw(distribution: str, seed: int, group: int, step: float, name: str) -> float:
    """The value of one random scalar: deterministic in its arguments."""
    rng = random.Random(f"optforge:{seed}:{group}:{int(step)}:{name}")
    return DISTRIBUTIONS[distribution](rng)
