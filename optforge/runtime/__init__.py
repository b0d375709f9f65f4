"""torch integration: the Optimizer, state, backends and compiled-rule cache."""
from .backends import BackendError
from .optimizer import Optimizer

__all__ = ["Optimizer", "BackendError"]
