"""What runs: the backend protocol and registry (``protocol.py``, ``registry.py``; the
recipe for a new backend is README.md), the loader for generated modules and the
launchers that call them."""
