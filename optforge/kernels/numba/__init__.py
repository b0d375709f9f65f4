"""The Numba CPU backend: its declaration (``backend.py``), the multi-tensor launcher and
the kernel helpers generated code imports.

Generated kernels (``compiler/printers/numba.py``) import ``helpers``; the runtime builds
``NumbaLauncher`` objects through the declaration in ``backend.py`` (listed in
``kernels/registry.py``). Importing this package imports no numba.
"""
