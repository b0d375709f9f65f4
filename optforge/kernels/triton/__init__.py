"""The triton backend's host side: its declaration (``backend.py``), launch layout,
launcher, rounding helpers, tuning space.

Importing this package does not import triton; the launcher does, when first built.
"""
