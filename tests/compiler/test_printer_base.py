"""The printer base: one refusal point for every backend, and the structure (where(),
powers, min/max, logic) printed once and spelled per backend."""
import math

import numpy as np
import pytest
import sympy as sp
import torch

from optforge.compiler import CompileError
from optforge.compiler.codegen import source
from optforge.compiler.plan import ElemTemp
from optforge.compiler.printers import base
from optforge.compiler.printers.numba import NumbaPrinter
from optforge.compiler.printers.torch import TorchPrinter
from optforge.compiler.printers.triton import TritonPrinter
from optforge.kernels import math_torch
from optforge.dsl.matrix import MatMul
from optforge.dsl.symbols import GradSymbol, HyperSymbol

PRINTERS = {"torch": lambda: TorchPrinter("myrule"),
            "numba": lambda: NumbaPrinter("myrule", "float32"),
            "triton": lambda: TritonPrinter("myrule")}
x = ElemTemp("e0", real=True)


@pytest.mark.parametrize("backend", PRINTERS)
@pytest.mark.parametrize("expr, node", [(sp.sin(x), "sin"), (sp.floor(x), "floor"),
                                        (x % 3, "Mod"), (sp.gamma(x + 1), "gamma")])
def test_an_unsupported_node_is_refused_naming_backend_node_and_expression(backend, expr, node):
    with pytest.raises(CompileError) as info:
        PRINTERS[backend]().doprint(2 * expr + 1)
    message = str(info.value)
    assert f"rule 'myrule': the {backend} printer does not support {node} in " in message
    assert sp.sstr(expr) in message  # the offending subexpression, as the rule wrote it


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_what_only_torch_prints_is_refused_by_the_kernels(backend):
    g = GradSymbol("g", real=True)
    for expr, node in [(MatMul(g, g), "MatMul"),
                       (HyperSymbol("lr", real=True) * x, "HyperSymbol"),
                       (sp.oo * x, "Infinity")]:
        with pytest.raises(CompileError, match=f"the {backend} printer does not support {node}"):
            PRINTERS[backend]().doprint(expr)


def test_every_refusal_is_the_base_printers():
    """The subclasses spell; none has a refusal (or a where()/power/product) of its own."""
    for cls in (TorchPrinter, NumbaPrinter, TritonPrinter):
        own = set(vars(cls))
        assert not own & {"refuse", "doprint", "_print_Piecewise", "_print_Pow", "_print_Mul",
                          "_print_Add", "_print_Max", "_print_Min"}, cls


def test_an_unknown_backend_is_refused_by_codegen():
    from optforge.catalogue import AdamW
    from optforge.runtime.compiled import compile_rule
    plan = compile_rule(AdamW.rule, AdamW.rule.default_variant).plan
    with pytest.raises(CompileError, match="no code generator for backend 'cuda'"):
        source(plan, "cuda")


# ---- the same structure, printed by each backend, computes what SymPy says ---------------
a, b = ElemTemp("e1", real=True), ElemTemp("e2", real=True)
EXPRS = [
    sp.Piecewise((a * 2, a > b), (b - 1, sp.And(a < 0, b < 0)), (a + b, True)),
    sp.sqrt(sp.Abs(a) + 1) / (b * b + 1) - 1 / sp.sqrt(b * b + 2),
    sp.Max(a, b, sp.Integer(0)) - sp.Min(a, 2 * b),
    sp.Piecewise((sp.exp(-a * a), sp.Or(sp.Not(a > 0), b >= 1)), (sp.log(b * b + 1), True)),
    sp.Pow(sp.Abs(a) + 1, sp.Rational(3, 2)) * sp.sign(b),
]
VALUES = [(0.5, -1.25), (-2.0, -3.0), (1.5, 1.0), (-0.75, 2.5), (0.0, 0.0)]


def _numba_eval(text: str, e1: float, e2: float) -> float:
    """The numba printer's text is numpy scalar code: evaluated here without numba."""
    env = {"np": np, "fmax": np.fmax, "fmin": np.fmin, "v_e1": None,
           "e1": np.float32(e1), "e2": np.float32(e2)}
    return float(eval(text, env))  # noqa: S307 - our own printer's output


def _torch_eval(text: str, e1: float, e2: float) -> float:
    # the generated module's names (compiler/templates/torch_step.py.tmpl)
    env = {"torch": torch, "_math": math_torch, "compute_dtype": torch.float32,
           "e1": torch.tensor([e1]), "e2": torch.tensor([e2])}
    return float(eval(text, env)[0])  # noqa: S307 - our own printer's output


@pytest.mark.parametrize("expr", EXPRS, ids=range(len(EXPRS)))
def test_numba_and_torch_print_the_structure_sympy_evaluates(expr):
    for e1, e2 in VALUES:
        want = float(expr.subs({a: e1, b: e2}).evalf())
        for evaluate, printer in ((_numba_eval, PRINTERS["numba"]()),
                                  (_torch_eval, PRINTERS["torch"]())):
            got = evaluate(printer.doprint(expr), e1, e2)
            assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), \
                (printer.backend, expr, e1, e2, got, want)


def test_the_base_spells_nothing_itself():
    with pytest.raises(NotImplementedError):
        base.BasePrinter("r").doprint(sp.Float(1.5))


def test_each_printer_spells_every_storage_dtype_the_abi_promises():
    from optforge.compiler.abi import STORAGE_DTYPES
    from optforge.compiler.printers.numba import STORAGE
    from optforge.compiler.printers.triton import TRITON_DTYPES
    assert sorted(STORAGE) == sorted(STORAGE_DTYPES["numba"])
    assert sorted(TRITON_DTYPES) == sorted(STORAGE_DTYPES["triton"])
