"""Names users choose cannot collide with, or inject into, generated code.

States and hyperparameters named like the generated code's own names (``n_p``,
``scalars``, ``math``, ``float``, ``torch``, ``_load``, triton's ``n_tensors`` for a state
``tensors``...) give the same numbers as a float64 reference on every backend; a rule
name with a newline is refused, and escaped if it reaches a template anyway.
Before: a state ``n_p`` silently gave wrong numbers on the torch backend, ``scalars`` a
SyntaxError, ``_load`` a TypeError, a hyperparameter ``float`` a failing prologue.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.compiler.templates import render
from optforge.dsl import DSLError, Rule, grad, param, random_scalar, sqrt, state, step
from optforge.dsl.randomness import draw
from tests.conftest import norm_rel

# the generated code's own names (torch, numba, triton, host prologue), and near misses
NAMES = ["n_p", "t_p", "u_lr", "scalars", "math", "float", "torch", "_load", "_mx",
         "_reduce", "_rows", "np", "tl", "triton", "prologue", "addresses", "blocks",
         "compute_dtype", "reduced", "tensors", "rows", "cols", "programs", "numel", "offs",
         "mask", "pid", "tid", "start", "kernel", "njit_cached", "prange", "carray", "i",
         "j", "n", "lo", "b", "x", "acc0", "shapes", "SLOTS"]
BACKENDS = ["torch", "numba", "triton"]
STEPS = 3
N = 1000


def many_states(lr=0.1):
    p, g = param(), grad()
    new = {name: 0.5 * state(name) + g * ((k + 1) / len(NAMES)) for k, name in enumerate(NAMES)}
    return Rule(p - lr * sum(new.values()) / len(NAMES), **new)


def _hyper_value(k: int) -> float:
    return 0.1 + k / 100


def _many_hypers():
    """A rule whose hyperparameters carry every name in NAMES (used in host math)."""
    args = ", ".join(f"{n}={_hyper_value(k)}" for k, n in enumerate(NAMES))
    body = (f"def many_hypers({args}):\n"
            "    p, g, t = param(), grad(), step()\n"
            "    m1 = 0.9 * state('mom') + g\n"
            f"    total = sum(sqrt(h) * (1 - h**t) for h in ({', '.join(NAMES)},))\n"
            "    return Rule(p - 0.01 * total * m1, mom=m1)\n")
    namespace = {"param": param, "grad": grad, "step": step, "state": state, "sqrt": sqrt,
                 "Rule": Rule}
    exec(body, namespace)  # noqa: S102 - a test rule with names no def can spell by hand
    return namespace["many_hypers"]


def _grads():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(N, dtype=torch.float64, generator=gen), \
        [torch.randn(N, dtype=torch.float64, generator=gen) for _ in range(STEPS)]


def _run(rule, backend):
    if backend == "triton" and DEVICE.type != "cpu" and not torch.cuda.is_available():
        pytest.skip("no triton device")
    device = DEVICE if backend == "triton" else torch.device("cpu")
    init, grads = _grads()
    p = torch.nn.Parameter(init.float().to(device))
    opt = optforge.Optimizer([p], rule, backend=backend)
    for g in grads:
        p.grad = g.float().to(device)
        opt.step()
    return p.detach().cpu(), {k: v.cpu() for k, v in opt.state[p].items()
                             if isinstance(v, torch.Tensor) and v.numel() == N}


@pytest.mark.parametrize("backend", BACKENDS)
def test_states_named_like_generated_code(backend):
    init, grads = _grads()
    p, ms = init.clone(), {name: torch.zeros(N, dtype=torch.float64) for name in NAMES}
    for g in grads:
        for k, name in enumerate(NAMES):
            ms[name] = 0.5 * ms[name] + g * ((k + 1) / len(NAMES))
        p = p - 0.1 * sum(ms.values()) / len(NAMES)
    got, states = _run(many_states, backend)
    assert norm_rel(got, p) < 1e-6
    for name in NAMES:
        assert norm_rel(states[name], ms[name]) < 1e-6, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_hyperparameters_named_like_generated_code(backend):
    init, grads = _grads()
    p, m = init.clone(), torch.zeros(N, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + g
        total = sum(_hyper_value(k) ** 0.5 * (1 - _hyper_value(k) ** t)
                    for k in range(len(NAMES)))
        p = p - 0.01 * total * m
    got, _ = _run(_many_hypers(), backend)
    assert norm_rel(got, p) < 1e-6


def test_a_rule_name_that_would_inject_code_is_refused():
    def sgd(lr=0.1):
        p, g = param(), grad()
        return Rule(p - lr * g)

    sgd.__name__ = sgd.__qualname__ = "sgd\nraise SystemExit('code from a rule name ran')"
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(DSLError, match="printable"):
        optforge.Optimizer([p], sgd, backend="torch").step()


def test_a_rule_name_reaching_a_template_stays_in_its_comment():
    source = render("prologue.py", rule="x\nraise SystemExit('injected')\u2028",
                    fingerprint="0", args="", body="    pass", results="")
    namespace = {}
    exec(compile(source, "<prologue>", "exec"), namespace)  # noqa: S102 - must not exit
    assert namespace["prologue"]() == ()
    assert "\nraise" not in source


def random_named_math(lr=0.5):
    p, g = param(), grad()
    return Rule(p - lr * random_scalar("math", "uniform") * random_scalar("float") * g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_scalars_named_like_generated_code(backend):
    """Random scalars reach the host prologue too (and SymPy's printer has a method for
    its own, unrelated RandomSymbol class, which must not print ours bare)."""
    init, grads = _grads()
    p = init.clone()
    for t, g in enumerate(grads, start=1):
        scale = draw("uniform", 0, 0, t, "math") * draw("exponential", 0, 0, t, "float")
        p = p - 0.5 * scale * g
    got, _ = _run(random_named_math, backend)
    assert norm_rel(got, p) < 1e-6
