"""Reductions over a whole tensor (norms, dot products, means).

These are DSL nodes so a rule can be written with them; compiling them needs the
multi-stage compiler (a reduce stage before the elementwise stage), which the
current compiler does not have yet: ``Rule`` validation rejects them with an
error that names the expression, rather than letting them fail deep in a backend.
"""
from __future__ import annotations

import sympy as sp


class Reduction(sp.Function):
    """A node whose value depends on many elements of its argument."""

    is_real = True


class norm(Reduction):  # noqa: N801 - DSL names are lowercase like torch's
    """The 2-norm of a tensor."""

    nargs = 1


class dot(Reduction):  # noqa: N801
    """The sum of the elementwise product of two tensors."""

    nargs = 2


class mean(Reduction):  # noqa: N801
    """The mean of a tensor's elements."""

    nargs = 1


class amax(Reduction):  # noqa: N801
    """The largest element of a tensor."""

    nargs = 1


class total(Reduction):  # noqa: N801 - ``sum`` would shadow the builtin
    """The sum of a tensor's elements."""

    nargs = 1
