"""Hypothesis strategies for random elementwise rules, and the rule functions they make.

A rule is three expression trees, the new values of two states (``m``, ``v``) and the
parameter's update, over p, g, the states, hyperparameters (a, b, lr), constants and
the step, with the DSL's safe functions and ``where`` on tensor and scalar conditions.
"Safe": every function gets arguments it is finite and smooth on (sqrt/rsqrt/log of
``abs(x) + c``, exp of a clamped value, division by ``abs(y) + c``), so no backend
meets a NaN or a huge derivative near 0 that would turn an ulp into a disagreement; the
states are clamped so values stay O(1) over the steps. Trees are nested tuples
(printable: a failing example shrinks to a readable rule).
"""
from __future__ import annotations

import sympy as sp

from hypothesis import strategies as st

from optforge.dsl import (Rule, abs, clamp, exp, grad, lerp, log, maximum, minimum, param,
                          rsqrt, sign, sqrt, state, step, where)

LEAVES = ("p", "g", "m", "v", "a", "b")
CONSTANTS = (0.5, -1.5, 2.0, 3.0, 0.25)
UNARY = {
    "neg": lambda x: -x,
    "abs": abs,
    "sign": sign,
    "sqrt": lambda x: sqrt(abs(x) + 0.25),
    "rsqrt": lambda x: rsqrt(abs(x) + 0.25),
    "log": lambda x: log(abs(x) + 1),
    "exp": lambda x: exp(clamp(x, -3.0, 3.0)),
    "clamp": lambda x: clamp(x, -1.0, 0.75),
    "square": lambda x: clamp(x, -4.0, 4.0) ** 2,
}
BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / (abs(y) + 0.5),
    "max": maximum,
    "min": minimum,
    "lerp": lambda x, y: lerp(x, y, 0.3),
}
# scalar conditions: the step, and hyperparameters (a in (0.2, 0.9), b = -0.7 or 0.3)
SCALAR_CONDITIONS = ("t>1", "t>2", "a>0.5", "b>0")


def trees(max_leaves: int = 6):
    leaf = st.one_of(st.sampled_from(LEAVES).map(lambda n: ("leaf", n)),
                     st.sampled_from(CONSTANTS).map(lambda c: ("const", c)))

    def extend(inner):
        tensor_cond = st.tuples(st.just("cmp"), st.sampled_from((">", "<=")), inner, inner)
        scalar_cond = st.tuples(st.just("scalar"), st.sampled_from(SCALAR_CONDITIONS))
        return st.one_of(
            st.tuples(st.just("un"), st.sampled_from(sorted(UNARY)), inner),
            st.tuples(st.just("bin"), st.sampled_from(sorted(BINARY)), inner, inner),
            st.tuples(st.just("where"), st.one_of(tensor_cond, scalar_cond), inner, inner))
    return st.recursive(leaf, extend, max_leaves=max_leaves)


def rules():
    """(trees for m, v and the update; a; b; lr)"""
    return st.tuples(trees(), trees(), trees(),
                     st.sampled_from((0.2, 0.35, 0.8, 0.9)), st.sampled_from((-0.7, 0.3)),
                     st.sampled_from((0.05, 0.5)))


def _eval(tree, env):
    kind = tree[0]
    if kind == "leaf":
        return env[tree[1]]
    if kind == "const":
        return tree[1]
    if kind == "un":
        return UNARY[tree[1]](_eval(tree[2], env))
    if kind == "bin":
        return BINARY[tree[1]](_eval(tree[2], env), _eval(tree[3], env))
    cond = tree[1]
    if cond[0] == "scalar":
        name, bound = cond[1].split(">")
        c = env[name] > float(bound)
    else:
        # sympified: two constants compare to SymPy's true/false, a constant condition
        # where() takes (a Python bool is refused: it is what `expr == expr` gives)
        x, y = sp.sympify(_eval(cond[2], env)), sp.sympify(_eval(cond[3], env))
        c = x > y if cond[1] == ">" else x <= y
    return where(c, _eval(tree[2], env), _eval(tree[3], env))


def make_rule(m_tree, v_tree, u_tree, a, b, lr, name: str):
    """A rule function (hyperparameters lr, a, b) from three trees."""
    def rule(lr=lr, a=a, b=b):
        p, g, t = param(), grad(), step()
        m, v = state("m"), state("v", init=param())
        env = {"p": p, "g": g, "m": m, "v": v, "a": a, "b": b, "t": t}
        m1 = clamp(_eval(m_tree, env), -4.0, 4.0)
        v1 = clamp(_eval(v_tree, env), -4.0, 4.0)
        env.update(m=m1, v=v1)  # the update reads the new states, as Adam does
        return Rule(p - lr * clamp(_eval(u_tree, env), -2.0, 2.0), m=m1, v=v1)
    rule.__name__ = name
    return rule
