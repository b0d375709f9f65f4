"""Prints the host prologue: plain Python over floats (float64), using ``math``.

It takes the step's values as they come, ``prologue(hyper, randoms, t)``: the group's
hyperparameter values and the step's random draws by name (two dicts the runtime builds
anyway: passing them whole saves rebuilding keyword arguments on every step), and the step
count. It reads each into the user's scalar under its ``u_`` name (``base.local``): a
hyperparameter called ``math`` or ``float`` must not shadow the module or the builtin.
"""
from __future__ import annotations

from sympy.printing.pycode import PythonCodePrinter

from ..plan import KernelPlan
from ..templates import render
from ...dsl.randomness import RandomSymbol
from ...dsl.symbols import StepSymbol
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
    """A module defining ``prologue(hyper, randoms, t) -> tuple`` of the kernel's scalars."""
    printer = _HostPrinter({"fully_qualified_modules": True, "standard": "python3"})
    # (symbol names are identifiers, checked by the DSL; repr() quotes them regardless)
    reads = [f"    {local(s)} = " + ("_t" if isinstance(s, StepSymbol) else
                                     f"{'_r' if isinstance(s, RandomSymbol) else '_h'}"
                                     f"[{str(s)!r}]") for s in plan.prologue_inputs]
    body = [f"    {s.name} = float({printer.doprint(e)})" for s, e in plan.prologue]
    results = "".join(f"{s.name}, " for s in plan.scalar_args)
    return render("prologue.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  args="_h, _r, _t", body="\n".join(reads + body) or "    pass",
                  results=results)
