"""The LaTeX of a rule: named intermediates and repeats as their own rows, in an order
that means what the rule computes when the rows are read top to bottom."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import sympy as sp

from optforge.catalogue import REGISTRY
from optforge.compiler import lower
from optforge.dsl import (Rule, RuleSpec, grad, maximum, named, norm, param, sign, sqrt, state,
                          step, where)
from optforge.dsl.latex import rows
from optforge.dsl.symbols import TensorSymbol


def lamb_named(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, name=True):
    p, g, t = param(), grad(), step()
    b1, b2 = betas
    keep = named if name else (lambda e, _: e)
    m = b1 * state("exp_avg") + (1 - b1) * g
    v = b2 * state("exp_avg_sq") + (1 - b2) * g * g
    m_hat = keep(m / (1 - b1**t), "m_hat")
    v_hat = keep(v / (1 - b2**t), "v_hat")
    r = keep(m_hat / (sqrt(v_hat) + eps) + weight_decay * p, "r")
    ratio = keep(where((norm(p) > 0) & (norm(r) > 0), norm(p) / norm(r), 1), "ratio")
    return Rule(p - lr * ratio * r, exp_avg=m, exp_avg_sq=v)


def lion_like(lr=1e-4, betas=(0.9, 0.99)):
    p, g = param(), grad()
    m = state("exp_avg")
    return Rule(p - lr * sign(betas[0] * m + (1 - betas[0]) * g),
                exp_avg=betas[1] * m + (1 - betas[1]) * g)


def amsgrad_like(lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    p, g, t = param(), grad(), step()
    m = betas[0] * state("m") + (1 - betas[0]) * g
    v = maximum(state("vmax"), betas[1] * state("v") + (1 - betas[1]) * g * g)
    d = m / (1 - betas[0]**t) / (sqrt(v) + eps)
    return Rule(p - lr * d + 0.01 * lr * d * d, m=m, v=betas[1] * state("v") +
                (1 - betas[1]) * g * g, vmax=v)


def _run_rows(rule, seed=0):
    """Execute the rows top to bottom on random numbers, where a state's name means its
    current value (as a reader of the LaTeX does); return (by rows, direct) values."""
    gen = random.Random(seed)
    leaves = set().union(*(e.free_symbols for e in rule.outputs().values()))
    # sorted: a set of symbols iterates in a per-process (hash-seeded) order
    values = {s: gen.uniform(0.1, 0.9) for s in sorted(leaves, key=str)}  # betas < 1: real roots
    current = {s.name: values[s] for s in leaves if isinstance(s, TensorSymbol)}
    named_values = {}

    def value_of(s):
        if s.name.startswith("__new_"):
            return current[s.name[6:]]
        if s.name.startswith("__named_"):
            return named_values[s.name[8:]]
        return current[s.name] if s.name in current else values[s]

    for target, kind, e in rows(rule.updates, rule.param, rule.names):
        result = float(sp.sympify(e.xreplace({s: value_of(s) for s in e.free_symbols})))
        (named_values if kind == "=" else current)[target] = result
    direct = {k: float(sp.sympify(v.xreplace(values))) for k, v in rule.outputs().items()}
    # (rows that cannot be ordered are primed definitions: k' is the new k)
    return {k: named_values.get(f"{k}'", current[k]) for k in direct}, direct


@pytest.mark.parametrize("fn", [lion_like, amsgrad_like])
def test_rows_read_top_to_bottom_compute_the_rule(fn):
    by_rows, direct = _run_rows(RuleSpec(fn).build())
    assert by_rows == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("name", ["AdamW", "Adam", "Lion", "SGD", "RMSprop", "Adamax",
                                  "Signum", "EXAdam"])  # elementwise: no reductions
def test_catalogue_rows_compute_the_rule(name):
    spec = REGISTRY[name].rule
    flags = {k: True for k, v in spec.defaults.items() if isinstance(v, bool)
             and k != "maximize"}
    flags.update({k: 0.9 for k in ("momentum",) if k in spec.defaults})
    rule = spec.build(spec.variant_of({**spec.defaults, **flags}))
    by_rows, direct = _run_rows(rule)
    assert by_rows == pytest.approx(direct, rel=1e-9)


def test_a_state_read_before_its_update_is_written_after_the_reader():
    tex = RuleSpec(lion_like).build().latex().splitlines()
    assert tex[1].startswith("p &\\leftarrow") and tex[2].startswith("\\mathrm{exp\\_avg} &")


def test_named_intermediates_are_rows_of_their_own():
    tex = RuleSpec(lamb_named).build().latex()
    lines = [line.split(" &")[0] for line in tex.splitlines()[1:-1]]
    assert lines == ["\\mathrm{exp\\_avg}", "\\mathrm{exp\\_avg\\_sq}", "\\hat{m}", "\\hat{v}",
                     "r", "\\mathrm{ratio}", "p"]
    assert tex.count("1 - \\beta_{1}^{t}") == 1  # the Adam direction written once
    assert "p &\\leftarrow - \\mathrm{lr} r \\mathrm{ratio} + p" in tex


def test_naming_does_not_change_what_is_compiled():
    spec = RuleSpec(lamb_named)
    with_names = lower(spec.build(spec.variant_of({**spec.defaults, "name": True})),
                       spec.hyper_symbols)
    without = lower(spec.build(spec.variant_of({**spec.defaults, "name": False})),
                    spec.hyper_symbols)
    assert with_names.fingerprint() == without.fingerprint()
    assert named(sp.Symbol("x") + 1, "y") == sp.Symbol("x") + 1  # outside a rule: a no-op


def _lamb_unnamed(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
    """LAMB as catalogue/lamb.py wrote it before it named its rows."""
    from optforge.dsl import Rule, grad, norm, param, sqrt, state, step, where
    p, g, t = param(), grad(), step()
    b1, b2 = betas
    m = b1 * state("exp_avg") + (1 - b1) * g
    v = b2 * state("exp_avg_sq") + (1 - b2) * g * g
    r = (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps) + weight_decay * p
    w_norm, r_norm = norm(p), norm(r)
    ratio = where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, 1)
    return Rule(p - lr * ratio * r, exp_avg=m, exp_avg_sq=v)


def test_repeats_are_named_automatically():
    from optforge.dsl import RuleSpec
    tex = RuleSpec(_lamb_unnamed).build().latex()  # names nothing
    assert "u_{1} &= " in tex and tex.count("1 - \\beta_{2}^{t}") == 1
    assert len(tex) < 800  # it was one 1,331-character line with r spelled out three times


def test_lamb_shows_its_named_rows():
    tex = REGISTRY["LAMB"].latex()
    for row in ("\\hat{m} &= ", "\\hat{v} &= ", "\nr &= ", "\\mathrm{trust\\_ratio} &= "):
        assert row in tex, row


def test_catalogue_page_uses_the_same_rows():
    page = (Path(__file__).resolve().parents[2] / "docs" / "catalogue.md").read_text()
    assert REGISTRY["LAMB"].latex() in page


def test_every_catalogue_rule_that_evaluates_reads_right_top_to_bottom():
    checked = []
    for name, cls in REGISTRY.items():
        rule = cls.rule.build()
        try:
            by_rows, direct = _run_rows(rule)
        except (TypeError, KeyError):  # reductions, matrix ops: not numbers without tensors
            continue
        assert by_rows == pytest.approx(direct, rel=1e-9), name
        checked.append(name)
    assert len(checked) >= 15, checked


def test_rows_that_cannot_be_ordered_fall_back_to_primed_values():
    def swap(lr=0.1):
        p, m = param(), state("m")
        return Rule(p - lr * m, m=m + p)  # p reads the old m, m reads the old p

    def swap_wd(lr=0.1):
        p, m = param(), state("m")
        return Rule(p - lr * m + lr * (m + p), m=m + p)  # ...and p the new m too

    for fn in (swap, swap_wd):
        rule = RuleSpec(fn).build()
        assert "m' &= " in rule.latex() and "p' &= " in rule.latex()
        by_rows, direct = _run_rows(rule)
        assert by_rows == pytest.approx(direct)
