"""torch integration: the Optimizer, state, backends and compiled-rule cache."""
from .backends import BackendError
from .optimizer import Optimizer
from . import providers  # noqa: F401,E402 - registers the built-in input providers

__all__ = ["Optimizer", "BackendError"]
