"""Reduce stages on the triton backend against the torch backend (the oracle), on a GPU
or under TRITON_INTERPRET=1.

Kept small (the interpreter costs ~1 ms per program and more per operation): a handful
of rules that together cover every op and scope (sum, max, count, numel, ndim over
tensor, row, column and group; row x column values; nested stages), on shapes that hit
the tile map's cases: rows shorter than a tile, several row tiles ((257, 129)), several
column tiles ((5, 700): rows wider than COLS_MAX), 1-D and 0-D tensors (rows of length
1), 4-D tensors, and several tensors in one bucket (group scopes across tensors).
"""
import math
import sys

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.catalogue.lamb import LAMB
from optforge.dsl import Rule, amax, grad, mean, norm, numel, param, where
from optforge.dsl import abs as abs_
from optforge.kernels.triton.launcher import TritonLauncher
from optforge.kernels.triton.reduce import COLS_MAX
from optforge.runtime.backends import BACKENDS
from optforge.runtime.compiled import STATS, compile_rule
from tests.kernels.test_numba_reduce import every_scope, rm_plus
from tests.conftest import norm_rel
from tests.runtime.test_reductions import lamb_like

# both backends accumulate in float32 in different orders: a few ulps apart
TOL = 1e-6
BF16_TOL = 2.0 ** -8


def row_col(lr=0.1):
    """Per-row (AdamP's channel view) and per-column values in one update."""
    g = grad()
    return Rule(param() - lr * (g - mean(g, over="row")) / (abs_(amax(g, over="col")) + 1)
                * numel(over="row") / numel())


def global_clip(lr=0.1, max_norm=1.0):
    g = grad()
    total = norm(g, over="group")
    return Rule(param() - lr * where(total > max_norm, max_norm / (total + 1e-6), 1) * g)


def _pair(rule, shapes, steps=3, dtype=torch.float32, make=None, **kw):
    """The same gradients through a triton and a torch optimizer; returns both params."""
    make = make or (lambda ps, backend: optforge.Optimizer(ps, rule, backend=backend, **kw))
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    ours = [torch.nn.Parameter(x.clone().to(DEVICE)) for x in init]
    ref = [torch.nn.Parameter(x.clone()) for x in init]
    o1, o2 = make(ours, "triton"), make(ref, "torch")
    for _ in range(steps):
        for a, b in zip(ours, ref):
            g = torch.randn(b.shape, generator=gen).to(dtype)
            a.grad, b.grad = g.to(DEVICE), g.clone()
        o1.step()
        o2.step()
    return ours, ref, o1, o2


CASES = [
    ("lamb_trust_ratio", lamb_like, [(7, 13), (1,), (257, 129), (1023,)]),
    ("row_col", row_col, [(7, 13), (257, 129), (5, 700), (1023,)]),
    ("global_clip", global_clip, [(7, 13), (257, 129), (3,)]),
    ("regret_matching_nested", rm_plus, [(20,), (4, 5)]),
    ("every_op_and_scope", every_scope, [(7, 13), (1,), (257, 129), (3, 4, 5, 6), ()]),
]


@pytest.mark.parametrize("name,rule,shapes", CASES, ids=[c[0] for c in CASES])
def test_reduction_rules_match_torch_backend(name, rule, shapes):
    assert 700 > COLS_MAX  # (5, 700) has several column tiles
    ours, ref, _, _ = _pair(rule, shapes)
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < TOL, (name, tuple(b.shape))


def test_lamb_bfloat16_params():
    ours, ref, o1, o2 = _pair(None, [(257, 129), (7, 13)], dtype=torch.bfloat16,
                              make=lambda ps, backend: LAMB(ps, lr=1e-2, backend=backend))
    for a, b in zip(ours, ref):
        assert a.dtype == torch.bfloat16
        assert norm_rel(a.detach().cpu(), b.detach()) < BF16_TOL


def test_max_propagates_nan_like_torch():
    def rule(lr=1.0):
        g = grad()
        return Rule(param() - lr * (amax(g) + amax(g, over="row") + amax(g, over="col")))
    g = torch.randn(6, 5)
    g[2, 3] = math.nan
    p = torch.nn.Parameter(torch.zeros(6, 5, device=DEVICE))
    p.grad = g.to(DEVICE)
    optforge.Optimizer([p], rule, backend="triton").step()
    q = torch.nn.Parameter(torch.zeros(6, 5))
    q.grad = g
    optforge.Optimizer([q], rule, backend="torch").step()
    assert torch.equal(p.detach().cpu().isnan(), q.detach().isnan())
    assert p.detach().cpu().isnan().all()  # the tensor max is NaN: every element


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_skip_nonfinite(bad):
    def make(ps, backend):
        return optforge.AdamW(ps, lr=1e-2, skip_nonfinite=True, backend=backend)
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(s, generator=gen) for s in [(7, 13), (1023,)]]
    ours = [torch.nn.Parameter(x.clone().to(DEVICE)) for x in init]
    ref = [torch.nn.Parameter(x.clone()) for x in init]
    o1, o2 = make(ours, "triton"), make(ref, "torch")
    for k in range(3):
        grads = [torch.randn(x.shape, generator=gen) for x in init]
        if k == 1:
            grads[1][17] = bad
            before = [p.detach().clone() for p in ours]
        for a, b, g in zip(ours, ref, grads):
            a.grad, b.grad = g.to(DEVICE), g.clone()
        o1.step()
        o2.step()
        if k == 1:
            assert all(torch.equal(p.detach(), x) for p, x in zip(ours, before))
            assert all(torch.equal(o1.state[p]["step"].cpu(), torch.tensor(1.0)) for p in ours)
    assert o1.param_groups[0]["nonfinite_skips"] == 1 == o2.param_groups[0]["nonfinite_skips"]
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < TOL


def test_reductions_are_deterministic():
    """Same inputs, same bits: partials combined in a fixed order, no atomics."""
    def run():
        ours, _, _, _ = _pair(every_scope, [(257, 129), (1023,), (5, 700)], steps=2)
        return [p.detach().cpu().clone() for p in ours]
    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.skipif(DEVICE.type != "cuda", reason="host syncs exist only on CUDA")
@pytest.mark.parametrize("cls", [LAMB, optforge.AdamP], ids=["LAMB", "AdamP"])
def test_a_reduce_step_does_not_sync_the_host(cls):
    """Partials are combined on the device and every table goes up from pinned memory:
    after the first steps (compiling, tuning, building layouts), a step never waits
    (LAMB: one stage of norms; AdamP: two stages, row results, a misaligned view whose
    tiles run in a launch of their own)."""
    view = torch.zeros(301, device=DEVICE)[1:].view(20, 15)  # 4 bytes past an aligned address
    ps = [torch.nn.Parameter(torch.randn(s, device=DEVICE)) for s in [(257, 129), (1023,)]]
    ps.append(torch.nn.Parameter(view.copy_(torch.randn(20, 15, device=DEVICE))))
    opt = cls(ps, backend="triton")
    for k in range(3):
        for p in ps:
            p.grad = torch.randn_like(p)
        torch.cuda.set_sync_debug_mode("error" if k == 2 else 0)
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_lr_change_does_not_recompile():
    p = torch.nn.Parameter(torch.randn(300, device=DEVICE))
    q = torch.nn.Parameter(p.detach().cpu().clone())
    o1, o2 = LAMB([p], lr=1e-3, backend="triton"), LAMB([q], lr=1e-3, backend="torch")
    compiled = compile_rule(o1.spec, o1.spec.variant_of(o1.param_groups[0]))
    for k in range(4):
        for group in o1.param_groups + o2.param_groups:
            group["lr"], group["weight_decay"] = 1e-3 * (k + 1), 0.1 * k
        g = torch.randn(300)
        p.grad, q.grad = g.to(DEVICE), g
        before = (STATS["kernels:triton"],
                  sum(m.startswith("optforge_gen_triton") for m in sys.modules))
        o1.step()
        o2.step()
        if k:
            assert (STATS["kernels:triton"],
                    sum(m.startswith("optforge_gen_triton") for m in sys.modules)) == before
    assert isinstance(compiled.launcher(BACKENDS["triton"]), TritonLauncher)
    assert norm_rel(p.detach().cpu(), q.detach()) < TOL


def test_combine_levels_reduce_consecutive_segments():
    """The host combine: segments of any length (0 included), several levels deep."""
    import numpy as np

    from optforge.kernels.triton.reduce import _levels, combine
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(0, 3 if rng.random() < 0.3 else 100, size=rng.integers(1, 12))
        x = torch.randn(int(lengths.sum()), dtype=torch.float64)
        levels = _levels(lengths, "cpu", width=int(rng.integers(2, 9)))
        total, top = combine(x, "sum", levels), combine(x, "max", levels)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        for k in range(len(lengths)):
            seg = x[bounds[k]:bounds[k + 1]]
            assert abs(float(total[k]) - float(seg.sum())) < 1e-9
            assert float(top[k]) == (float(seg.max()) if len(seg) else -math.inf)


AOT_SCRIPT = """
import json, re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from optforge.compiler.printers.triton import triton_source
from optforge.dsl.spec import RuleSpec
from optforge.kernels.cache import load_module
from optforge.runtime.compiled import compile_rule
from tests.kernels.test_numba_reduce import every_scope

spec = RuleSpec(every_scope)
plan = compile_rule(spec, spec.default_variant).plan
module = load_module(triton_source(plan, "bfloat16", ()), "triton")
scalars = {s.name: "fp32" for s in plan.scalar_args}
target, out = GPUTarget("cuda", 90, 32), {}
sig = {"addr_tab": "*i64", "n_tensors": "i32", "numel_tab": "*i64", "block_tensor": "*i32",
       "block_start": "*i64", "shape_tab": "*i64", "rs_tab": "*fp32", "raddr_tab": "*i64",
       **scalars, "BLOCK_SIZE": "constexpr", "ALIGN": "constexpr"}
ptx = triton.compile(ASTSource(module.kernel, sig, {"BLOCK_SIZE": 2048, "ALIGN": 16}),
                     target=target, options={"num_warps": 8}).asm["ptx"]
out["elementwise"] = len(re.findall(r"\\.f64", ptx))
sig = {"addr_tab": "*i64", "n_tensors": "i32", "shape_tab": "*i64", "rs_tab": "*fp32",
       "raddr_tab": "*i64", "tile_tab": "*i64", "out_t": "*fp32", "out_row": "*fp32",
       "out_col": "*fp32", "n_programs": "i32", "row_total": "i32", "col_total": "i32",
       **scalars, "ROWS": "constexpr", "COLS": "constexpr", "ALIGN": "constexpr",
       "INDEX32": "constexpr", "COLS_DIV": "constexpr"}
for k, fn in enumerate(module.REDUCE_STAGES):
    for cols in (1, 256):
        consts = {"ROWS": 2048 // cols, "COLS": cols, "ALIGN": 16, "INDEX32": True,
                  "COLS_DIV": 4}
        ptx = triton.compile(ASTSource(fn, sig, consts),
                             target=target, options={"num_warps": 4}).asm["ptx"]
        out[f"r{k}-{cols}"] = len(re.findall(r"\\.f64", ptx))
print(json.dumps(out))
"""


def test_reduce_kernels_compile_for_sm90(tmp_path):
    """Compiled-only typing (pointer casts, constexpr branches, 2-D reductions) that the
    interpreter cannot check: every kernel of a two-stage rule builds for sm_90, no f64."""
    import json
    import os
    import subprocess
    from pathlib import Path
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton"), TRITON_DEFAULT_FP_FUSION="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", AOT_SCRIPT], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {"elementwise": 0, "r0-1": 0, "r0-256": 0, "r1-1": 0, "r1-256": 0}
