"""Rules: hyperparameters from keyword defaults, variants, and printing as math and LaTeX."""
import sympy as sp

from optforge.catalogue import adamw, sgd
from optforge.dsl import Rule, RuleSpec, clamp, grad, lerp, param, state, where
from optforge.dsl.symbols import HyperSymbol


def test_hyperparameters_come_from_keyword_defaults():
    spec = RuleSpec(adamw)
    assert spec.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                                 amsgrad=False, maximize=False)
    assert spec.static == ["amsgrad", "maximize"]
    assert [s.symbol.name for s in spec.slots] == ["lr", "beta_1", "beta_2", "eps",
                                                   "weight_decay"]
    assert spec.hyper_values({"lr": 0.5, "betas": (0.8, 0.9), "eps": 1, "weight_decay": 0}) \
        == {"lr": 0.5, "beta_1": 0.8, "beta_2": 0.9, "eps": 1.0, "weight_decay": 0.0}


def test_variants_change_structure_not_hyperparameter_values():
    spec = RuleSpec(adamw)
    plain = spec.build(spec.variant_of({**spec.defaults}))
    ams = spec.build(spec.variant_of({**spec.defaults, "amsgrad": True}))
    assert set(plain.states) == {"exp_avg", "exp_avg_sq"}
    assert set(ams.states) == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert spec.variant_of({**spec.defaults, "lr": 7.0}) == spec.default_variant


def test_zero_specialized_hyperparameter():
    spec = RuleSpec(sgd)
    assert spec.build(spec.variant_of({**spec.defaults, "momentum": 0.0})).states == {}
    with_m = spec.build(spec.variant_of({**spec.defaults, "momentum": 0.9}))
    assert set(with_m.states) == {"momentum_buffer"}
    # the momentum value stays a run-time symbol
    assert any(isinstance(s, HyperSymbol) and s.name == "momentum"
               for s in with_m.param.free_symbols)


def test_rule_prints_as_math_and_latex():
    rule = RuleSpec(adamw).build()
    text = str(rule)
    assert "exp_avg <-" in text and "p <-" in text and "beta_1" in text
    tex = rule.latex()
    assert tex.startswith("\\begin{aligned}") and "\\beta_{1}" in tex
    assert "\\mathrm{exp\\_avg}" in tex and "\\sqrt" in tex
    assert "exp_avg" in rule.pretty()


def test_functions_build_expected_nodes():
    def r(lr=0.1):
        p, g = param(), grad()
        m = state("m")
        m1 = lerp(m, g, 0.1)
        return Rule(clamp(p - lr * where(g > 0, m1, -m1), min=-1, max=1), m=m1)

    rule = RuleSpec(r).build()
    assert rule.param.has(sp.Piecewise) and rule.param.has(sp.Max) and rule.param.has(sp.Min)


def test_dsl_imports_no_torch():
    import subprocess
    import sys
    code = "import sys, optforge.dsl, optforge.compiler; sys.exit('torch' in sys.modules)"
    # optforge/__init__ imports the runtime; import the subpackages' modules directly
    code = ("import importlib.util, sys; sys.modules['optforge'] = type(sys)('optforge');"
            "sys.modules['optforge'].__path__ = ['optforge'];"
            "import optforge.dsl, optforge.compiler.lower, optforge.compiler.printers.torch;"
            "sys.exit(int('torch' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_rule_outputs_order():
    def r(lr=0.1):
        m = state("m")
        return Rule(param() - lr * m, m=grad())
    assert list(RuleSpec(r).build().outputs()) == ["m", "p"]
    assert isinstance(Rule, type)
