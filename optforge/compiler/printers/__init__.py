"""Expression printers: one base (``base.py``: structure and the one refusal point), a
subclass per backend with its spellings, and the host (prologue) printer."""
