"""Compiler passes: scalar hoisting, CSE, power rewriting, and the traffic model."""
import sympy as sp

from optforge.catalogue import Adagrad, AdamW, adamw
from optforge.compiler import lower, traffic
from optforge.compiler.passes import cse, hoist_scalars, pow_to_mul
from optforge.compiler.plan import ScalarTemp
from optforge.dsl import RuleSpec
from optforge.dsl.symbols import GradSymbol, HyperSymbol, StateSymbol, StepSymbol


def _adamw_plan(**flags):
    spec = RuleSpec(adamw)
    return lower(spec.build(spec.variant_of({**spec.defaults, **flags})), spec.hyper_symbols)


def test_hoist_scalars_moves_bias_corrections_to_the_host():
    plan = _adamw_plan()
    kernel_exprs = [e for _, e in plan.temps] + [e for _, e in plan.stores]
    for e in kernel_exprs:  # the kernel sees only tensors and prologue scalars
        assert not any(isinstance(s, (HyperSymbol, StepSymbol)) for s in e.free_symbols)
    host = {str(e) for _, e in plan.prologue}
    assert any("beta_1**t" in h for h in host) and any("beta_2**t" in h for h in host)


def test_hoist_groups_scalar_factors_into_one_temporary():
    lr, wd = HyperSymbol("lr", real=True), HyperSymbol("wd", real=True)
    p = StateSymbol("x", real=True)
    prologue, out = hoist_scalars({"p": -lr * wd * p})
    assert len(prologue) == 1 and sp.simplify(prologue[0][1] + lr * wd) == 0
    assert out["p"] == prologue[0][0] * p


def test_hoist_scalar_condition_becomes_a_flag():
    t = StepSymbol("t", positive=True)
    g = GradSymbol("g", real=True)
    prologue, out = hoist_scalars({"p": sp.Piecewise((g, t > 1), (2 * g, True))})
    flag = prologue[0][0]
    assert isinstance(flag, ScalarTemp)
    assert out["p"].args[0].cond == sp.Ne(flag, 0)


def test_cse_computes_the_new_moment_once():
    plan = _adamw_plan()
    # exp_avg's new value is also the update's numerator: one temporary, used twice
    exp_avg_value = dict((r.name, e) for r, e in plan.stores)["exp_avg"]
    assert exp_avg_value.is_Symbol
    assert exp_avg_value in dict((r.name, e) for r, e in plan.stores)["p"].free_symbols


def test_cse_shares_repeated_subexpressions():
    g = GradSymbol("g", real=True)
    temps, out = cse({"a": sp.sqrt(g + 1) * 2, "b": sp.sqrt(g + 1) + g})
    assert len(temps) == 1 and all(temps[0][0] in e.free_symbols for e in out.values())


def test_pow_to_mul_rewrites_small_integer_powers():
    g = GradSymbol("g", real=True)
    temps, out = pow_to_mul([], {"a": g**2, "b": g**-2, "c": g**7, "d": sp.sqrt(g)})
    assert str(out["a"]) == "g*g" and out["a"].func == sp.Mul
    assert out["b"] == sp.Pow(sp.Mul(g, g, evaluate=False), -1, evaluate=False)
    assert out["c"] == g**7 and out["d"] == sp.sqrt(g)  # left for the printers


def test_traffic_model_adamw():
    assert traffic(_adamw_plan()).read == 16 and traffic(_adamw_plan()).written == 12
    assert traffic(_adamw_plan()).total == 28  # DESIGN.md: fp32 AdamW is 28 B/param
    assert traffic(_adamw_plan(amsgrad=True)).total == 36
    assert traffic(_adamw_plan(), "bfloat16").total == 14
    assert AdamW.traffic().total == 28 and Adagrad.traffic().total == 20


def test_plan_loads_and_stores():
    plan = _adamw_plan()
    assert [r.name for r in plan.loads] == ["p", "g", "exp_avg", "exp_avg_sq"]
    assert [r.name for r, _ in plan.stores] == ["exp_avg", "exp_avg_sq", "p"]
    assert plan.fingerprint() == _adamw_plan().fingerprint()
    assert plan.fingerprint() != _adamw_plan(amsgrad=True).fingerprint()


def test_state_bytes_per_param():
    assert AdamW.state_bytes_per_param() == 8
    assert AdamW.state_bytes_per_param("bfloat16", amsgrad=True) == 6


def test_pow_to_mul_computes_a_compound_base_once():
    g = GradSymbol("g", real=True)
    m = StateSymbol("m", real=True)
    temps, out = pow_to_mul([], {"v": (g - m) ** 2})
    (base, value), = temps
    assert value == g - m and out["v"] == sp.Mul(base, base, evaluate=False)
