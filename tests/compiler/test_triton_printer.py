"""Structure of generated Triton source (no device needed): the loads and stores match
the traffic model, no float64 or libdevice anywhere, and unsupported nodes are named."""
import itertools
import re

import pytest
import sympy as sp

import optforge
from optforge.compiler import CompileError, lower, traffic
from optforge.compiler.printers.triton import TritonPrinter, triton_source
from optforge.dsl.symbols import GradSymbol, ParamSymbol

FORBIDDEN = ("float64", "tl.float64", "libdevice", "tl.extra", "math.", "fp64", "double")


EXHAUSTIVE_UP_TO = 5  # structural flags; AdafactorOriginal's 9 would be 512 variants


def _flag_variants(spec):
    """Every combination of a rule's bools and zero-specialized keys, or for more than
    EXHAUSTIVE_UP_TO of them every combination within two flips of the defaults (each
    pair of options together) and all of them flipped."""
    n = len(spec.static) + len(spec.zero_specialized)
    if n <= EXHAUSTIVE_UP_TO:
        return set(itertools.product((False, True), repeat=n))
    default = spec.default_variant[:n]
    flips = [c for k in range(3) for c in itertools.combinations(range(n), k)] + [range(n)]
    return {tuple(v != (i in set(c)) for i, v in enumerate(default)) for c in flips}


def _variants():
    """Every structural variant of every catalogue rule (see _flag_variants)."""
    for name, cls in optforge.CATALOGUE.items():
        for variant in _flag_variants(cls.rule):
            yield pytest.param(cls.rule, variant, id=f"{name}-{variant}")


def _plan(spec, variant):
    return lower(spec.build(variant), spec.hyper_symbols)


TAIL = "    else:\n        mask = offs < numel\n"


def _branches(src: str) -> tuple[str, str]:
    """(full-block path, masked tail path) of a generated kernel."""
    head, tail = src.split(TAIL)
    return head.split("    if start + BLOCK_SIZE <= numel:\n")[1], tail


def test_adamw_has_four_loads_and_three_stores():
    spec = optforge.AdamW.rule
    plan = _plan(spec, spec.default_variant)
    for branch in _branches(triton_source(plan, "float32")):
        assert len(re.findall(r"tl\.load\(ptr_", branch)) == 4
        assert len(re.findall(r"tl\.store\(", branch)) == 3
    assert traffic(plan).read == 16 and traffic(plan).written == 12


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("spec,variant", list(_variants()))
def test_loads_and_stores_match_the_traffic_model(spec, variant, param_dtype):
    plan = _plan(spec, variant)
    written = [r.name for r, _ in plan.stores]
    sr = [n for n in written if n == "p"] if param_dtype == "bfloat16" else []
    src = triton_source(plan, param_dtype, sr)
    compile(src, "<generated>", "exec")  # valid Python (no empty block, say)
    full, tail = _branches(src)
    # the full-block path never masks (vector accesses); the tail path masks everything
    assert "mask" not in full
    # kernels gathering row results: one full path per case (the block inside one row,
    # across one row end, rows shorter than a block), each with the same loads and
    # stores of the tensors; the first is counted below
    cases = re.split(r"        (?:elif n_cols >= BLOCK_SIZE:|else:)\n", full)
    if len(cases) > 1:
        first, rest = cases[0], cases[1:]
        for other in rest:
            for pattern in (r"tl\.load\(ptr_(\w+) \+ offs", r"tl\.store\(ptr_(\w+) \+ offs"):
                assert re.findall(pattern, other) == re.findall(pattern, first)
        full = first
    # (multi-stage plans also gather row/column results at the element's row or column)
    gathers = len(re.findall(r"\+ (?:row|col), mask=mask", tail))
    assert tail.count("mask=mask") - gathers == len(plan.loads) + len(plan.stores)
    loaded = re.findall(r"tl\.load\(ptr_(\w+) \+ offs", full)
    stored = re.findall(r"tl\.store\(ptr_(\w+) \+ offs", full)
    assert re.findall(r"tl\.load\(ptr_(\w+) \+ offs", tail) == loaded
    assert re.findall(r"tl\.store\(ptr_(\w+) \+ offs", tail) == stored
    assert sorted(loaded) == sorted(r.name for r in plan.loads)
    assert sorted(stored) == sorted(written)
    # bytes moved per element, read off the source, equal the traffic model's
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "sign_bits": 0.125, "sign_votes": 0.125}
    dtype_of = {r.name: r.dtype or param_dtype for r in plan.loads}
    dtype_of.update({r.name: r.dtype or param_dtype for r, _ in plan.stores})
    for stage in plan.reduce_stages:
        dtype_of.update({r.name: r.dtype or param_dtype for r in stage.loads})
    # each reduce kernel reads its stage's inputs once (the traffic model's extra pass)
    reduce_src = src.split("@triton.jit\ndef optforge_")[1:-1]
    assert len(reduce_src) == len(plan.reduce_stages)
    for k in reduce_src:  # whole tiles, then the masked tail tiles: the same loads
        whole, part = k.split("    else:\n        rmask = ")
        found = re.findall(r"tl\.load\(ptr_(\w+) \+ offs", whole)
        assert re.findall(r"tl\.load\(ptr_(\w+) \+ offs, mask=mask", part) == found
        # (row and column partials are stored under masks of their own)
        assert "mask" not in whole.split("if (row0 + ROWS")[1].replace("mask=row0", "").replace(
            "mask=col0", "")
        loaded += found
    # the torch matrix stage reads its per-element inputs and writes its buffers
    buffers = 0
    for stage in plan.matrix_stages:
        per_element = [r for r in stage.loads if not plan.states.get(r.name, None)
                       or not plan.states[r.name].shape]
        dtype_of.update({r.name: r.dtype or param_dtype for r in per_element})
        loaded += [r.name for r in per_element]
        buffers += sum(size[plan.states[name].dtype] for name in stage.buffers)
    if plan.pre_plan is not None:  # the pre-stage kernel's own loads and stores
        pre_written = {r.name for r, _ in plan.pre_plan.stores}
        pre_full, _ = _branches(triton_source(plan.pre_plan, param_dtype,
                                              [n for n in sr if n in pre_written]))
        loaded += re.findall(r"tl\.load\(ptr_(\w+) \+ offs", pre_full)
        stored += re.findall(r"tl\.store\(ptr_(\w+) \+ offs", pre_full)
        dtype_of.update({r.name: r.dtype or param_dtype for r in plan.pre_plan.loads})
        dtype_of.update({r.name: r.dtype or param_dtype for r, _ in plan.pre_plan.stores})
    t = traffic(plan, param_dtype)
    assert sum(size[dtype_of[n]] for n in loaded) == t.read
    assert sum(size[dtype_of[n]] for n in stored) + buffers == t.written
    lowered = src.lower()
    for word in FORBIDDEN:
        assert word not in lowered, word
    # three bfloat16 conversions, the stochastic rounding's bits, float16 rounding and
    # noise, sign and the kernel; multi-stage plans: two NaN-propagating max helpers and
    # one kernel per stage
    extra = 2 + len(plan.reduce_stages) if plan.reduce_stages else 0
    assert src.count("@triton.jit") == 8 + extra


def test_hyperparameters_are_kernel_arguments_not_constants():
    spec = optforge.AdamW.rule
    src = triton_source(_plan(spec, spec.default_variant), "float32")
    assert "0.001" not in src and "0.999" not in src  # lr and beta2 defaults
    assert "s0, s1, s2, s3, s4, s5, s6, BLOCK_SIZE: tl.constexpr, ALIGN: tl.constexpr" in src


def test_unsupported_nodes_are_named():
    p, g = ParamSymbol("p", real=True), GradSymbol("g", real=True)
    printer = TritonPrinter("myrule")
    with pytest.raises(CompileError, match="sin in sin"):
        printer.doprint(sp.sin(g))
    with pytest.raises(CompileError, match="floor"):
        printer.doprint(sp.floor(p))
    with pytest.raises(CompileError, match="non-finite"):
        printer.doprint(sp.oo * g)
    with pytest.raises(CompileError, match="Symbol in lr"):  # a hyperparameter never
        printer.doprint(sp.Symbol("lr") * g)  # reaches a kernel un-hoisted: refuse it
    with pytest.raises(CompileError, match="beyond"):
        printer.doprint(sp.Pow(g, 100, evaluate=False))


def test_printed_operations():
    p, g = ParamSymbol("p", real=True), GradSymbol("g", real=True)
    pr = TritonPrinter("r")
    assert pr.doprint(sp.sqrt(g)) == "tl.sqrt_rn(v_g)"
    assert pr.doprint(1 / sp.sqrt(g)) == "tl.div_rn(1.0, tl.sqrt_rn(v_g))"
    assert pr.doprint(p / g) == "tl.div_rn((v_p), v_g)"
    assert pr.doprint(sp.Pow(g, sp.Rational(3, 2))) == "tl.exp2(1.5 * tl.log2(v_g))"
    assert pr.doprint(sp.Pow(g, 3, evaluate=False)) == "(v_g * v_g * v_g)"
    assert pr.doprint(sp.sign(p + g)) == "sign_f32((v_g + v_p))"
    assert "propagate_nan=tl.PropagateNan.ALL" in pr.doprint(sp.Max(p, g))
    assert pr.doprint(sp.Piecewise((p, g > 0), (g, True))) == "tl.where((v_g > 0.0), v_p, v_g)"


def test_stochastic_rounding_only_for_written_bf16_tensors():
    spec = optforge.AdamW.rule
    plan = _plan(spec, spec.default_variant)
    with pytest.raises(CompileError, match="not a written bfloat16 tensor"):
        triton_source(plan, "float32", {"p"})
    with pytest.raises(CompileError, match="'g'"):
        triton_source(plan, "bfloat16", {"g"})
    src = triton_source(plan, "bfloat16", {"p", "exp_avg"})
    assert "seed_exp_avg, seed_p, BLOCK_SIZE" in src
    assert src.count("f32_to_bf16_sr(o_") == 2 * 2  # full and tail paths
    assert src.count("= philox_noise16(seed_") == 2  # once per program and tensor
