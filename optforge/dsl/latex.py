"""A rule as an ``aligned`` LaTeX block that reads like the algorithm box of a paper.

SymPy expressions carry no names: ``m_hat`` in the rule function is inlined everywhere
it is used, so LAMB's update printed as one line with the Adam direction three times.
Here the rule is rendered as a sequence of rows, executed top to bottom:

- ``exp_avg <- ...``: a state's new value. Where a later row uses that new value, it
  reads the state's name (the paper's convention); a row that needs the *old* value
  comes before the assignment.
- ``\\hat{m} = ...``: an intermediate the rule named with ``named(expr, "m_hat")``, or a
  tensor subexpression that occurs more than once, named ``u_1, u_2...``.
- ``p <- ...``, last unless it reads a state's old value (Lion's sign of the
  interpolated momentum comes before the momentum's update).

Where no order works (p reads the old m and m the old p), every value is a primed
definition of old values instead: ``m' = ...``, ``p' = ...``.

Naming never changes what is compiled: ``named`` returns its argument unchanged and
only records the name in the rule being built.
"""
from __future__ import annotations

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from .symbols import TensorSymbol, active_context

_SIZE_MIN = 6  # ops; smaller repeats (norm(p), 1 - beta1) read better inline


def named(expr, name: str):
    """``expr``, remembered as ``name`` for the rule's LaTeX (``"m_hat"`` -> \\hat{m}).

    Outside a rule being built it simply returns ``expr``.
    """
    expr = sp.sympify(expr)
    ctx = active_context()
    if ctx is not None and not expr.is_Atom:
        names = ctx.__dict__.setdefault("names", {})
        names.setdefault(expr, name)  # the first name given to an expression wins
    return expr


def current_names() -> dict:
    """The names recorded so far in the rule being built (expr -> name)."""
    ctx = active_context()
    return dict(ctx.__dict__.get("names", {})) if ctx is not None else {}


def latex_label(name: str, latex_name) -> str:
    """``m_hat`` -> ``\\hat{m}``, ``u_1`` -> ``u_{1}``, ``m'`` -> ``m'``; else the rule's
    symbol style."""
    if name.endswith("'"):  # a new value in the primed fallback
        return latex_label(name[:-1], latex_name) + "'"
    stem, sep, suffix = name.rpartition("_")
    if sep and suffix in ("hat", "bar", "tilde"):
        return f"\\{suffix}{{{latex_label(stem, latex_name)}}}"
    if sep and len(stem) == 1 and suffix.isdigit():
        return f"{stem}_{{{suffix}}}"
    return latex_name(name)


def _tensor_size(e) -> int:
    return sp.count_ops(e) if any(isinstance(s, TensorSymbol) for s in e.free_symbols) else 0


def _largest_repeat(defs: dict):
    """The largest tensor subexpression (of at least _SIZE_MIN ops) that occurs more than
    once inside the rows' definitions (a named row's whole definition does not count),
    or None."""
    counts: dict = {}
    for (kind, _), e in defs.items():
        for node in sp.preorder_traversal(e):
            if kind == "=" and node is e:
                continue
            # (a where()'s (value, condition) pair is not an expression a row can name)
            if _tensor_size(node) >= _SIZE_MIN and not isinstance(node, ExprCondPair):
                counts[node] = counts.get(node, 0) + 1
    found = [node for node, n in counts.items() if n > 1]
    return max(found, key=sp.count_ops) if found else None


def _replace(e, target, symbol):
    # subs, not xreplace: SymPy flattens m_hat / d into exp_avg * (1 - b1**t)**-1 * d**-1,
    # where m_hat is no longer one node; subs matches such a part of a product or sum
    return e.xreplace({target: symbol}) if target.is_Atom else e.subs(target, symbol)


def rows(updates: dict, param_expr, names: dict) -> list[tuple[str, str, sp.Expr]]:
    """``[(target name, "<-" or "=", expression)]`` in execution order (see module doc)."""
    new_of = {k: sp.Symbol(f"__new_{k}") for k in updates}  # stands for the new value
    old_of = {s.name: s for e in [*updates.values(), param_expr] for s in e.free_symbols
              if isinstance(s, TensorSymbol) and (s.name in updates or s.name == "p")}
    defs = {("<-", k): v for k, v in updates.items()}
    defs[("<-", "p")] = param_expr
    symbol_of = {v: new_of[k] for k, v in updates.items()}
    for expr, name in names.items():
        if expr not in set(defs.values()) and ("=", name) not in defs:
            defs[("=", name)] = expr
            symbol_of[expr] = sp.Symbol(f"__named_{name}")
    # replace the largest definitions first, so each one is written with the smaller
    # names; a row is never replaced by its own name
    for target in sorted(symbol_of, key=sp.count_ops, reverse=True):
        for key, e in defs.items():
            if key[0] == "=" and e == target or key[0] == "<-" and updates.get(key[1]) is target:
                continue
            defs[key] = _replace(e, target, symbol_of[target])
    # then name what still repeats (LAMB's r inside and outside its norm), largest first
    auto = 0
    while (repeat := _largest_repeat(defs)) is not None:
        auto += 1
        symbol = sp.Symbol(f"__named_u_{auto}")
        for key, e in defs.items():
            if not (key[0] == "=" and e == repeat):
                defs[key] = e.xreplace({repeat: symbol})
        defs[("=", f"u_{auto}")] = repeat
    # a row reading both the old and the new value of a state gets the new one inline
    for key, e in defs.items():
        for k, s in new_of.items():
            if s in e.free_symbols and k in old_of and old_of[k] in e.free_symbols:
                defs[key] = e = e.xreplace({s: defs[("<-", k)]})
    try:
        ordered = _ordered(defs, old_of, [n for kind, n in defs if kind == "="])
    except _Cycle:  # e.g. p reads the old m and m the old p: primed rows, all of old values
        return [(f"{k}'", "=", v) for k, v in updates.items()] + [("p'", "=", param_expr)]
    # number the automatic names in reading order
    renames, k = {}, 0
    for name, kind, _ in ordered:
        if kind == "=" and name.startswith("u_") and name[2:].isdigit():
            k += 1
            renames[sp.Symbol(f"__named_{name}")] = sp.Symbol(f"__named_u_{k}")
    return [(renames.get(sp.Symbol(f"__named_{n}"), sp.Symbol("__named_" + n)).name[8:]
             if kind == "=" else n, kind, e.xreplace(renames)) for n, kind, e in ordered]


class _Cycle(Exception):
    """No top-to-bottom order reads every value right (not seen in the catalogue)."""


def _ordered(defs: dict, old_of: dict, labels: list):
    """Rows in dependency order: a state's (or p's) row after every row that reads its old
    value and before every row that reads its new one; a name's row before its readers;
    otherwise the rule's own order (states, then p). _Cycle if no order exists."""
    by_symbol = {sp.Symbol(f"__named_{n}"): ("=", n) for n in labels}
    writes = [k for kind, k in defs if kind == "<-"]
    needs: dict = {key: set() for key in defs}  # key -> rows that must come before it
    for key, e in defs.items():
        free = e.free_symbols
        needs[key] |= {by_symbol[s] for s in free if s in by_symbol}
        for k in writes:
            if key == ("<-", k):
                continue
            if sp.Symbol(f"__new_{k}") in free:
                needs[key].add(("<-", k))
            if k in old_of and old_of[k] in free:
                needs[("<-", k)].add(key)
    result, placed, visiting = [], set(), set()

    def place(key):
        if key in visiting:
            raise _Cycle(key)
        if key in placed:
            return
        visiting.add(key)
        for first in sorted(needs[key], key=list(defs).index):
            place(first)
        visiting.discard(key)
        placed.add(key)
        result.append(key)

    for key in defs:
        if key[0] == "<-":
            place(key)
    return [(name, kind, defs[(kind, name)]) for kind, name in result]
