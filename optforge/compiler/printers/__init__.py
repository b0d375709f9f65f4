"""Expression printers, one per backend, plus the host (prologue) printer."""
