"""``cast(x, dtype)`` (dsl/cast.py): x rounded to bfloat16/float16/float32 to nearest even
and read back, bit for bit on every backend, against plain torch ``x.to(dtype).float()``."""
import pytest
import sympy as sp
import torch

import optforge
from optforge.dsl import DSLError, Rule, cast, grad, norm, param, sqrt, state, step

from tests.triton_env import DEVICE

BACKENDS = ["torch", "numba", "triton"]
STEPS = 5


def _cast_rule(dtype):
    def rounded_momentum(lr=0.1, beta=0.9):
        """Momentum kept at ``dtype`` precision, an update normalized by a cast tensor norm
        and a step size cast on the host (a scalar-only expression)."""
        p, g = param(), grad()
        m = cast(beta * state("m") + (1 - beta) * g, dtype)
        size = cast(lr / sqrt(step()), dtype)
        return Rule(p - size * cast(m / (norm(g) + 1e-3), dtype), m=m)
    return rounded_momentum


def _reference(dtype, lr=0.1, beta=0.9):
    """The same rule in plain torch; ``r(x)`` is the rounding under test (none when
    ``dtype`` is None)."""
    def r(x):
        return x if dtype is None else x.to(getattr(torch, dtype)).to(x.dtype)

    def step_fn(p, g, m, t):
        m = r(beta * m + (1 - beta) * g)
        size = r(torch.tensor(lr / t ** 0.5, dtype=torch.float32)).to(p.dtype)
        return p - size * r(m / (g.norm() + 1e-3)), m
    return step_fn


def _values(n, gen, dtype):
    # a spread of magnitudes (subnormal float16 to float16 overflow) exercises every path
    scale = torch.logspace(-9, 5.5, n, dtype=torch.float64)
    return (torch.randn(n, generator=gen, dtype=torch.float64) * scale).to(dtype)


def _run(backend, dtype, param_dtype=torch.float32, n=3000):
    gen = torch.Generator().manual_seed(0)
    device = DEVICE if backend == "triton" else "cpu"
    p = torch.nn.Parameter(_values(n, gen, param_dtype).to(device))
    opt = optforge.Optimizer([p], _cast_rule(dtype), backend=backend)
    ref_p, ref_m = p.detach().cpu().clone(), torch.zeros(n, dtype=param_dtype)
    ref = _reference(dtype)
    for t in range(1, STEPS + 1):
        g = _values(n, gen, param_dtype)
        p.grad = g.to(device)
        opt.step()
        ref_p, ref_m = ref(ref_p, g, ref_m, t)
    return p.detach().cpu(), opt.state[p]["m"].cpu(), ref_p, ref_m


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cast_rounds_like_torch_on_every_backend(backend, dtype):
    p, m, ref_p, ref_m = _run(backend, dtype)
    assert torch.equal(m, ref_m), f"{backend}: momentum differs from x.to({dtype}).float()"
    assert torch.equal(p, ref_p), f"{backend}: parameter differs from the torch reference"
    if dtype != "float32":  # the values really were rounded: unrounded math differs
        assert torch.equal(m, m.to(getattr(torch, dtype)).float())
        gen = torch.Generator().manual_seed(0)
        exact_p, exact_m = _values(len(p), gen, torch.float32), torch.zeros(len(p))
        for t in range(1, STEPS + 1):
            exact_p, exact_m = _reference(None)(exact_p, _values(len(p), gen, torch.float32),
                                                exact_m, t)
        assert not torch.equal(exact_m, m) and not torch.equal(exact_p, p)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_cast_under_float64_math_rounds_via_float32(backend):
    """float64 parameters compute in float64; a bfloat16 cast rounds as torch's float64 ->
    bfloat16 cast does (through float32) and the math goes on in float64."""
    p, m, ref_p, ref_m = _run(backend, "bfloat16", param_dtype=torch.float64)
    assert p.dtype == torch.float64
    assert torch.equal(m, ref_m) and torch.equal(p, ref_p)


def test_an_unknown_dtype_is_refused_naming_it():
    def bad(lr=0.1):
        return Rule(param() - lr * cast(grad(), "bf16"))
    with pytest.raises(DSLError, match=r"rule 'bad'.*cast\(\) dtype 'bf16'.*'bfloat16'"):
        optforge.Optimizer([torch.nn.Parameter(torch.zeros(3))], bad, backend="torch")


def test_cast_shows_in_the_rule_text_and_latex():
    rule = _cast_rule("float16")
    spec = optforge.RuleSpec(rule)
    built = spec.build(spec.variant_of(spec.defaults))
    assert "cast(" in sp.sstr(built.param) and "'float16'" in sp.sstr(built.param)
    assert r"\operatorname{float16}" in sp.latex(built.param)
