"""Variance-reduced gradient estimators that difference two gradients on one batch ξ_t:

SPIDER (Fang, Li, Lin & Zhang (2018), arXiv:1807.01695; the estimator of seed 004:152):

    v_t = g(x_t; ξ_t)                                     refresh steps: (t - 1) mod q == 0
                                                          (give a large batch there)
    v_t = g(x_t; ξ_t) - g(x_{t-1}; ξ_t) + v_{t-1}         otherwise
    x  <- x - lr v_t

STORM (Cutkosky & Orabona (2019), "Momentum-Based Variance Reduction in Non-Convex SGD",
arXiv:1905.10018; the momentum-assisted estimator of seed 002:78):

    d_1 = g(x_1; ξ_1)
    d_t = g(x_t; ξ_t) + (1 - a)(d_{t-1} - g(x_{t-1}; ξ_t))
    x  <- x - lr d_t                                      (constant lr and a)

g(x_{t-1}; ξ_t) is the runtime's ``given("grad_at_prev")``: ``step(closure)`` re-evaluates
the closure at x_{t-1}, which the rule keeps in the ``prev_param`` state. ``refresh`` is set
by ``step()`` each step (SPIDER: every ``refresh_period`` steps; STORM: the first step); on
refresh steps the closure is not re-evaluated. Instead of a closure, the gradient at
x_{t-1} may be passed: ``step(inputs={"grad_at_prev": {p: tensor}})``. Both use the plain
step x -= lr v (SPIDER-SFO's normalised step is not included).
"""
from ..dsl import Rule, given, grad, param, state
from ..runtime import providers  # noqa: F401 - registers "grad_at_prev"
from ..runtime.providers import PREV_PARAM, due, next_step
from ._base import CatalogueOptimizer


def spider(lr=1e-2, refresh_period=10, refresh=False):
    p, g = param(), grad()
    state(PREV_PARAM, init=p)  # x_{t-1}: starts at x_1 (never read on the first step)
    v_prev = state("estimator")  # declared in both variants: refresh steps overwrite it
    v = g if refresh else g - given("grad_at_prev") + v_prev
    return Rule(p - lr * v, estimator=v, **{PREV_PARAM: p})


def storm(lr=1e-2, a=0.1, refresh=False):
    p, g = param(), grad()
    state(PREV_PARAM, init=p)
    d_prev = state("estimator")
    d = g if refresh else g + (1 - a) * (d_prev - given("grad_at_prev"))
    return Rule(p - lr * d, estimator=d, **{PREV_PARAM: p})


class SPIDER(CatalogueOptimizer):
    """SGD on SPIDER's recursive gradient estimate; needs ``step(closure)``."""

    rule = spider
    source = "Fang et al. (2018), arXiv:1807.01695"

    def step(self, closure=None, inputs=None):
        for group in self.param_groups:
            group["refresh"] = due(self, group, "refresh_period")
        return super().step(closure, inputs)


class STORM(CatalogueOptimizer):
    """SGD on STORM's momentum-corrected gradient estimate; needs ``step(closure)``."""

    rule = storm
    source = "Cutkosky & Orabona (2019), arXiv:1905.10018"

    def step(self, closure=None, inputs=None):
        for group in self.param_groups:
            group["refresh"] = next_step(self, group) == 1
        return super().step(closure, inputs)
