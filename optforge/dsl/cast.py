"""``cast(x, dtype)``: x rounded to a narrower float type, the math going on in float32.

What a value loses when a mixed-precision implementation keeps it in bfloat16 (a
momentum buffer, an update before it is added) can be written into a rule: ``cast(m,
"bfloat16")`` is ``m.to(torch.bfloat16).float()``, round to nearest even, on every
backend bit for bit. Each printer spells it with the rounding it already has for 16-bit
stores (``compiler/printers``: ``round_to``); on the host (a cast of scalars only) it is
torch's own cast. Under float64 math (float64 parameters) a 16-bit cast goes through
float32 first, as torch's float64 -> bfloat16 cast does.
"""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .functions import _expr
from .symbols import _current_rule_name

CAST_DTYPES = ("float32", "bfloat16", "float16")


class Cast(sp.Function):
    """``Cast(x, k)``: x rounded to ``CAST_DTYPES[k]`` and widened back."""

    nargs = 2
    is_real = True

    @property
    def dtype(self) -> str:
        return CAST_DTYPES[int(self.args[1])]

    def _sympystr(self, printer):
        return f"cast({printer._print(self.args[0])}, {self.dtype!r})"

    def _latex(self, printer, exp=None):
        text = rf"\operatorname{{{self.dtype}}}\left({printer._print(self.args[0])}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def cast(x, dtype: str):
    """x rounded to ``dtype`` ("bfloat16", "float16" or "float32", round to nearest even)
    and read back: the math after it goes on in float32 (float64 for float64 params)."""
    if dtype not in CAST_DTYPES:
        raise DSLError(f"rule {_current_rule_name()!r}: cast() dtype {dtype!r} is not one of "
                       f"{', '.join(map(repr, CAST_DTYPES))}")
    return Cast(_expr(x, "cast", "x"), sp.Integer(CAST_DTYPES.index(dtype)))
