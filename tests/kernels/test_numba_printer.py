"""Structure of the generated Numba code: float32 all the way, whitelisted nodes, names.

Checks on the generated source and on Numba's LLVM IR, not golden copies of files.
"""
import ast
import re
from pathlib import Path

import numba
import pytest
import sympy as sp
from numba import types

import optforge
from optforge.compiler import CompileError
from optforge.compiler.plan import ElemTemp
from optforge.compiler.printers.numba import NumbaPrinter, kernel_name, numba_source
from optforge.kernels.cache import load_module
from optforge.runtime.backends import BACKENDS
from optforge.runtime.compiled import compile_rule
from tests.kernels.test_numba import kitchen_sink, mixed_storage

PRINTER = Path(optforge.__file__).parent / "compiler" / "printers" / "numba.py"
DOUBLE_MATH = re.compile(r"\b(fadd|fsub|fmul|fdiv|frem|fcmp \w+) (fast )?double\b|fpext float|"
                         r"@llvm\.\w+\.f64\b|call double @(exp|log|pow|sqrt)\b")


def _plan(rule, **flags):
    spec = rule.rule if hasattr(rule, "rule") else optforge.RuleSpec(rule)
    return compile_rule(spec, spec.variant_of({**spec.defaults, **flags}))


def _kernel_body(source: str) -> str:
    return source[source.index("@njit"):source.index("\nkernel = ")]


@pytest.mark.parametrize("rule", [optforge.AdamW, optforge.Lion, optforge.Adagrad, kitchen_sink,
                                  mixed_storage], ids=lambda r: getattr(r, "__name__", str(r)))
def test_float32_variant_has_only_float32_literals(rule):
    body = _kernel_body(numba_source(_plan(rule).plan, "float32"))
    body = re.sub(r"(a_\w+\[i\] = |= )np\.float64\(", "", body)  # float64 storage only
    assert "np.float64" not in body and "math." not in body
    bare = re.sub(r"np\.float32\([-+0-9.e]+\)", "", body)
    bare = re.sub(r"\[\d+(, j)?\]|\b\d+ \* lo\b", "", bare)  # table rows, item sizes
    assert not re.findall(r"(?<![\w.])\d+\.\d*|\b\d+e[-+]?\d+", bare), bare


@pytest.mark.parametrize("rule", [optforge.AdamW, kitchen_sink], ids=["AdamW", "kitchen_sink"])
def test_compiled_float32_kernel_does_no_float64_math(rule):
    """The IR proves it: scalars are narrowed once on entry, nothing is widened later.

    A kernel loaded from Numba's disk cache has no IR to show, so the generated
    function is compiled again here, as the template does but uncached.
    """
    plan = _plan(rule).plan
    module = load_module(numba_source(plan, "float32"), "numba")
    arr2, arr1 = types.int64[:, ::1], types.float64[::1]
    fresh = numba.njit(types.none(arr2, arr2, arr1), parallel=True,
                       fastmath=False)(module.kernel.py_func)
    ir = fresh.inspect_llvm(fresh.signatures[0])  # the prange body is in this module too
    assert "x float>" in ir  # and the inner loop is vectorized
    assert not DOUBLE_MATH.findall(ir)


def test_float64_parameters_compute_in_float64():
    body = _kernel_body(numba_source(_plan(optforge.AdamW).plan, "float64"))
    assert "np.float64(scalars[0])" in body and "np.float32" not in body


def test_sixteen_bit_storage_loads_and_rounds_by_hand():
    source = numba_source(_plan(mixed_storage).plan, "float32")
    assert "a_m = carray(ptr_u16(" in source and "bf16_to_f32(a_m[i])" in source
    assert "a_m[i] = f32_to_bf16(" in source and "a_v[i] = f32_to_f16(" in source
    assert "a_w[i] = np.float64(" in source and "v_w = np.float32(a_w[i])" in source


def test_unsupported_nodes_raise_compile_error_naming_them():
    x = ElemTemp("e0")
    pr = NumbaPrinter("myrule", "float32")
    for expr, node in [(sp.sin(x), "sin"), (sp.floor(x), "floor"), (x % 3, "Mod")]:
        with pytest.raises(CompileError, match=f"myrule.*numba printer does not support {node}"):
            pr.doprint(expr)
    with pytest.raises(CompileError, match="non-finite constant"):
        pr.doprint(sp.oo * x)


def test_variant_names_are_unique_per_plan_and_dtype():
    adamw, adam = _plan(optforge.AdamW).plan, _plan(optforge.Adam).plan
    names = {kernel_name(p, d) for p in (adamw, adam) for d in ("float32", "bfloat16")}
    assert len(names) == 4
    assert f"def {kernel_name(adamw, 'bfloat16')}(" in numba_source(adamw, "bfloat16")


def test_show_prints_one_parallel_kernel():
    source = BACKENDS["numba"].source(_plan(optforge.AdamW).plan)
    assert source.count("@njit_cached(parallel=True, fastmath=False") == 1
    assert source.count("prange(") == 1


def test_printer_imports_no_torch_and_no_numba():
    """compiler/ never touches a device: the printer only writes text."""
    tree = ast.parse(PRINTER.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    assert not imported & {"torch", "numba", "numpy"}
