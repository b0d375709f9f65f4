"""Tensors the runtime supplies to a rule at each step, beside ``param()`` and ``grad()``.

``given(name)`` declares one. Some names are produced by the runtime on request (see
``optforge.runtime.inputs``: a Hutchinson Hessian-diagonal estimate, the gradient at the
previous iterate on the current batch...); any other name is supplied by the user with
``optimizer.step(closure, inputs={name: {param: tensor}})`` (DOT's distillation gradient).
A rule reads an input like a state but never writes it; it is not kept in
``optimizer.state`` and costs one read per element.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .symbols import STATE_DTYPES, InputSymbol, StateDecl, _current_rule_name, check_name, declare


def given(name: str, dtype: str | None = None) -> InputSymbol:
    """A parameter-shaped tensor supplied at each step under ``name``.

    ``dtype`` is the dtype the kernel reads it in (None: the parameter's dtype).
    """
    check_name(name, "input")
    if dtype is not None and dtype not in STATE_DTYPES:
        raise DSLError(f"rule {_current_rule_name()!r}: input {name!r} has dtype {dtype!r}; "
                       f"supported {STATE_DTYPES} or None (the parameter's)")
    declare(StateDecl(name, sp.Integer(0), dtype, kind="input"))
    return InputSymbol(name, real=True)
