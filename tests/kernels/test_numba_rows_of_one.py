"""Row-reading rules on 1-D parameters (biases, norm weights) on the numba backend.

A 1-D parameter's ``(shape[0], -1)`` view has one column: every row holds one element.
The kernels once walked such a tensor one row segment per element and finished its row
results one row at a time (Adafactor 29 ms a step on one 1M vector vs torch's 1.2 ms;
AdamP ~12 s on 200 mixed tensors). These tests pin the flat path without timing it:
the row results of a bucket of vectors come straight from the reduce kernel (the
per-row finishing pass never runs), the generated kernels walk such a block as one run,
and the steps still match independent references (torch.optim.Adafactor; the official
AdamP, which leaves vectors unprojected, i.e. Adam with a decoupled decay).
"""
import re

import pytest
import torch

import optforge
from optforge.compiler.printers.numba import numba_source
from optforge.kernels.numba import stage_results
from optforge.kernels.numba.launcher import BLOCK
from optforge.runtime.compiled import compile_rule
from tests.catalogue.test_adamp import RefAdamP

# a vector over several blocks whose last block is partial, a short one, a single element
VECTORS = [(2 * BLOCK + 37,), (100,), (1,)]


def _counting(monkeypatch) -> list:
    """Count calls of the per-row finishing pass of the numba reduce stages."""
    calls = []
    real = stage_results.run_parallel

    def counted(fn, *args):
        if fn is stage_results.finish_rows:
            calls.append(args[3].shape[0])  # (its tensors)
        return real(fn, *args)
    monkeypatch.setattr(stage_results, "run_parallel", counted)
    return calls


def _params(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _steps(ours, refs, opts, steps=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p, q in zip(ours, refs):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        for opt in opts:
            opt.step()


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_adafactor_on_vectors_reads_row_results_from_the_kernel(monkeypatch):
    calls = _counting(monkeypatch)
    ours, refs = _params(VECTORS), _params(VECTORS)
    _steps(ours, refs, [optforge.Adafactor(ours, lr=1e-2, backend="numba"),
                        torch.optim.Adafactor(refs, lr=1e-2, foreach=False)])
    assert calls == []  # no per-row finishing: the kernel's values are the rows'
    for p, q in zip(ours, refs):
        assert _rel(p.detach(), q.detach()) < 1e-6


def test_a_matrix_beside_vectors_finishes_only_its_own_rows(monkeypatch):
    calls = _counting(monkeypatch)
    shapes = [(64, 300), *VECTORS]
    ours, refs = _params(shapes), _params(shapes)
    _steps(ours, refs, [optforge.Adafactor(ours, lr=1e-2, backend="numba"),
                        torch.optim.Adafactor(refs, lr=1e-2, foreach=False)])
    assert calls and all(n == len(shapes) for n in calls)  # one pass per stage and bucket
    for p, q in zip(ours, refs):
        assert _rel(p.detach(), q.detach()) < 1e-6


def test_adamp_on_vectors_matches_the_official_code(monkeypatch):
    calls = _counting(monkeypatch)
    ours, refs = _params(VECTORS), _params(VECTORS)
    ref = RefAdamP(refs, lr=1e-2, weight_decay=0.1)
    _steps(ours, refs, [optforge.AdamP(ours, lr=1e-2, weight_decay=0.1, backend="numba"), ref])
    assert calls == []
    assert ref.counts == dict(channel=0, layer=0, none=0)  # vectors: never projected
    for p, q in zip(ours, refs):
        assert _rel(p.detach(), q.detach()) < 1e-6


def _flat_branches(source: str) -> list[str]:
    """The ``if L == 1:`` branch of every kernel of a row-reading module."""
    out = []
    for m in re.finditer(r"\n( +)if L == 1:\n(.*?)\n\1else:\n", source, re.S):
        out.append(m.group(2))
    return out


@pytest.mark.parametrize("rule", [optforge.Adafactor, optforge.AdamP, optforge.SM3],
                         ids=lambda r: r.__name__)
def test_every_row_walking_kernel_runs_a_vector_block_as_one_run(rule):
    plan = compile_rule(rule.rule, rule.rule.variant_of(rule.rule.defaults)).plan
    source = numba_source(plan, "float32")
    kernels = source.count("@njit_cached(parallel=True")
    walking = source.count("while s < n:")
    branches = _flat_branches(source)
    assert walking and len(branches) == walking <= kernels
    for branch in branches:
        assert "while" not in branch and "seg += 1" not in branch
        assert "r = lo + i" in branch  # element i is row lo + i


def test_a_row_value_under_a_where_is_computed_only_in_its_branch():
    """AdamP's projection of a vector is never taken: in the flat branch its per-row
    value (a pow per element) must sit inside the conditional, not before it."""
    plan = compile_rule(optforge.AdamP.rule,
                        optforge.AdamP.rule.variant_of(optforge.AdamP.rule.defaults)).plan
    elementwise = numba_source(plan, "float32").split("_r0(")[0]
    (branch,) = _flat_branches(elementwise)
    powers = [line for line in branch.splitlines() if "np.power" in line]
    assert powers and all(" if " in line for line in powers)
