"""Rule: what one optimizer step computes — the new parameter and the new states."""
from __future__ import annotations

import sympy as sp

from .errors import DSLError
from .latex import current_names, latex_label
from .latex import rows as latex_rows
from .symbols import StateDecl, _current_rule_name


def _as_expr(value, what: str) -> sp.Expr:
    if value is None or isinstance(value, (str, bytes)):
        raise DSLError(f"rule {_current_rule_name()!r}: {what} is {value!r}, "
                       "not a DSL expression")
    if isinstance(value, (list, tuple, dict, set, sp.Tuple)):  # sympify would map over it
        raise DSLError(f"rule {_current_rule_name()!r}: {what} is a {type(value).__name__} "
                       f"({value!r}), not one DSL expression")
    try:
        return sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError) as exc:
        raise DSLError(f"rule {_current_rule_name()!r}: {what} ({value!r}) is not a "
                       "DSL expression") from exc


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta", "kappa", "lambda",
          "mu", "nu", "rho", "sigma", "tau", "phi", "omega", "zeta", "xi"}

_ALIASES = {"eps": "epsilon"}


def _latex_name(name: str) -> str:
    """beta_1 -> \\beta_{1}; exp_avg -> \\mathrm{exp\\_avg}; single letters stay italic."""
    if name == "initial_lr":  # initial_lr(): the lr a group started from
        return "\\mathrm{lr}_{0}"
    stem, _, sub = name.partition("_")
    stem = _ALIASES.get(stem, stem)
    if stem in _GREEK:
        return f"\\{stem}" + (f"_{{{sub}}}" if sub else "")
    if len(name) == 1:
        return name
    return "\\mathrm{" + name.replace("_", "\\_") + "}"


class Rule:
    """The result of one step: ``Rule(new_param, exp_avg=new_m, ...)``.

    Keyword names are the states being written; each must be declared with
    ``state(name)`` in the same rule function. After the rule is built (see
    ``RuleSpec``), ``states`` holds every declared state's declaration.
    """

    def __init__(self, new_param, **new_states):
        self.name = _current_rule_name()
        self.param = _as_expr(new_param, "the new parameter")
        self.updates = {k: _as_expr(v, f"the new value of state {k!r}")
                        for k, v in new_states.items()}
        self.states: dict[str, StateDecl] = {}
        self.randoms: dict[str, str] = {}  # random scalars: name -> distribution
        self.intervals: set[str] = set()  # hyperparameter names used as every()'s k
        self.names = current_names()  # named(expr, "m_hat") intermediates, for latex()

    def outputs(self) -> dict[str, sp.Expr]:
        """Every value this rule writes: states first, then the parameter ``p``."""
        return {**self.updates, "p": self.param}

    def __str__(self) -> str:
        lines = [f"{k} <- {sp.sstr(v)}" for k, v in self.updates.items()]
        lines.append(f"p <- {sp.sstr(self.param)}")
        return "\n".join(lines)

    def pretty(self) -> str:
        """Multi-line 2-D rendering (SymPy's pretty printer, unicode)."""
        blocks = [f"{k} <-\n{sp.pretty(v, use_unicode=True)}" for k, v in self.updates.items()]
        blocks.append(f"p <-\n{sp.pretty(self.param, use_unicode=True)}")
        return "\n\n".join(blocks)

    def latex(self) -> str:
        """An ``aligned`` LaTeX block, one row per written value or named intermediate
        (``named(...)`` and repeated subexpressions), in execution order: see dsl/latex."""
        steps = latex_rows(self.updates, self.param, getattr(self, "names", {}))
        labels = {}
        for target, kind, e in steps:
            labels[target] = latex_label(target, _latex_name)
            for s in e.free_symbols:
                if s.name.startswith("__new_"):
                    labels[s.name] = _latex_name(s.name[len("__new_"):])
                elif s.name.startswith("__named_"):
                    labels[s.name] = latex_label(s.name[len("__named_"):], _latex_name)
                else:
                    labels[s.name] = _latex_name(s.name)
        by_symbol = {s: labels[s.name] for _, _, e in steps for s in e.free_symbols}
        arrow = {"<-": "\\leftarrow", "=": "="}
        rows = [f"{labels[target]} &{arrow[kind]} {sp.latex(e, symbol_names=by_symbol)}"
                for target, kind, e in steps]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def __repr__(self) -> str:
        return f"Rule({self.name}: {', '.join(self.outputs())})"
