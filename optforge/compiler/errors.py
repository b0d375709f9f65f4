"""Errors raised while turning a plan into source code."""
from ..dsl.errors import DSLError


class CompileError(DSLError):
    """A printer met a node it does not support; the message names node and expression."""
