"""The Numba CPU backend's runtime side: the multi-tensor launcher and kernel helpers.

Generated kernels (``compiler/printers/numba.py``) import ``helpers``; the runtime
builds ``NumbaLauncher`` objects through ``runtime/backends.py``.
"""
from .launcher import NumbaLauncher

__all__ = ["NumbaLauncher"]
