"""Prints the host prologue: plain Python over floats (float64), using ``math``.

Its arguments are the user's scalars under their ``u_`` names (``torch.local``): a
hyperparameter called ``math`` or ``float`` must not shadow the module or the builtin.
"""
from __future__ import annotations

from sympy.printing.pycode import PythonCodePrinter

from ..plan import KernelPlan
from ..templates import render
from .base import local


class _HostPrinter(PythonCodePrinter):
    def _print_Symbol(self, s):
        return local(s)

    # SymPy's printers have a _print_RandomSymbol (for sympy.stats), which the class
    # name of our random scalars would otherwise reach before _print_Symbol
    _print_RandomSymbol = _print_Symbol

    def _print_Cast(self, e):
        """``cast`` of scalars: the prologue's ``_cast`` (torch's rounding)."""
        return f"_cast({self._print(e.args[0])}, {e.dtype!r})"


def prologue_source(plan: KernelPlan) -> str:
    """A module defining ``prologue(<hyper names>, t) -> tuple`` of the kernel's scalars."""
    printer = _HostPrinter({"fully_qualified_modules": True, "standard": "python3"})
    body = [f"    {s.name} = float({printer.doprint(e)})" for s, e in plan.prologue]
    results = "".join(f"{s.name}, " for s in plan.scalar_args)
    return render("prologue.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  args=", ".join(local(s) for s in plan.prologue_inputs),
                  body="\n".join(body) or "    pass", results=results)
