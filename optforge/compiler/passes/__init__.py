"""Compiler passes: each a small function from expressions to expressions."""
from .cse import cse
from .hoist_scalars import hoist_scalars
from .pow_to_mul import pow_to_mul
from .traffic import Traffic, traffic

__all__ = ["cse", "hoist_scalars", "pow_to_mul", "traffic", "Traffic"]
