"""Sums, products and boolean constants as text: the part every expression printer shares.

A negated term prints as ``a - b`` rather than ``a + -1*b``; a product splits into
numerator and denominator factors so each printer can emit its own divisions.
"""
from __future__ import annotations


class InfixArithmetic:
    """Mixin for printers that define ``doprint(expr) -> str``."""

    def _print_Add(self, e):
        parts = [self.doprint(e.args[0])]
        for a in e.args[1:]:
            if a.is_Mul and a.args[0].is_Number and a.args[0] < 0:
                parts.append(f"- {self.doprint(-a)}")
            else:
                parts.append(f"+ {self.doprint(a)}")
        return "(" + " ".join(parts) + ")"

    def split_product(self, e) -> tuple[list[str], list[str]]:
        """(numerator texts, denominator texts) of a product, in argument order."""
        num, den = [], []
        for a in e.args:
            if a.is_Pow and a.exp == -1:
                den.append(self.doprint(a.base))
            else:
                num.append(self.doprint(a))
        return num, den

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"
