"""Compiler passes: each a small function from expressions to expressions."""
from .cse import cse
from .hoist_scalars import hoist_levels, hoist_scalars
from .pow_to_mul import pow_to_mul
from .split_matrix import split_matrix
from .split_prestage import split_prestage
from .split_reductions import split_reductions
from .traffic import Traffic, traffic

__all__ = ["cse", "hoist_levels", "hoist_scalars", "split_reductions", "split_matrix", "split_prestage", "pow_to_mul", "traffic", "Traffic"]
