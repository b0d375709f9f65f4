"""``python -m optforge``: the command line (see optforge/cli.py)."""
import sys

from .cli import main

sys.exit(main())
