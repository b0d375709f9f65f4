"""FSDP2 (``fully_shard``, DTensor parameters) with optforge optimizers on 2 gloo ranks (and
4 for AdamW): every rule steps the local shards (runtime/shards.py).

Each case is compared with one process stepping the same global batch, and AdamW also
with torch.optim.AdamW on the same shards. Tolerance 1e-6 relative for elementwise and
reduction rules: FSDP2 reduce-scatters the ranks' mean gradients (another order of
float32 additions than one process's mean, a few ulps), and a norm's shard partials are
added in another order than one pass over the whole tensor. Muon: see its test.
"""
from __future__ import annotations

import pytest
import torch

import optforge
from tests.conftest import norm_rel
from tests.distributed import fsdp_workers, workers
from tests.distributed.spawn import load, run_ranks

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


def _one_process(kind: str):
    model = workers.make_model()
    opt = (optforge.AdamW(model.parameters(), backend="numba", **workers.ADAMW)
           if kind == "adamw" else fsdp_workers.make_optimizer(kind, model))
    workers._train(model, opt, 0, 1)
    return workers.snapshot(model, opt)


def _assert_close(got: dict, ref: dict, tol: float, what: str) -> None:
    for i, (a, b) in enumerate(zip(got["params"], ref["params"])):
        assert norm_rel(a, b) < tol, f"{what}: parameter {i}: {norm_rel(a, b):.2e}"
    for i, (sa, sb) in enumerate(zip(got["states"], ref["states"])):
        assert sa.keys() == sb.keys(), what
        for key in sa:
            assert norm_rel(sa[key], sb[key]) < tol, f"{what}: state {key!r} of {i}"


@pytest.mark.parametrize("world", [2, 4])
def test_adamw_numba_on_shards_equals_torch_and_one_process(world):
    """Issue 17's must-show: the case that segfaulted in the numba launcher."""
    out = run_ranks(fsdp_workers.adamw, world, timeout_s=55)
    ref = _one_process("adamw")
    for rank in range(world):
        ours, theirs = load(out, "adamw-local", rank), load(out, "torch-local", rank)
        for a, b in zip(ours["params"], theirs["params"]):  # the same shards, rank by rank
            assert a.shape == b.shape and norm_rel(a, b) < 1e-6
        for sa, sb in zip(ours["states"], theirs["states"]):
            for key in ("exp_avg", "exp_avg_sq"):
                assert norm_rel(sa[key], sb[key]) < 1e-6
            assert float(sa["step"]) == float(sb["step"]) == workers.DP_STEPS
        _assert_close(load(out, "adamw", rank), ref, 1e-6, f"rank {rank} of {world}")
        # the states are DTensors placed like their parameter (what DCP reshards)
        assert load(out, "placements", rank) == ["(Shard(dim=0),)"] * 2


@pytest.fixture(scope="module")
def rules_run():
    return run_ranks(fsdp_workers.rules, 2, ("lamb", "muon", "clip"), timeout_s=55)


def test_lamb_trust_ratio_from_shard_partials(rules_run):
    ref = _one_process("lamb")
    for rank in range(2):
        _assert_close(load(rules_run, "lamb", rank), ref, 1e-6, f"LAMB rank {rank}")
        assert load(rules_run, "lamb-matrix-bytes", rank) == 0


def test_muon_gathers_each_matrix_on_one_rank(rules_run):
    """Tolerance 1e-6, as for the elementwise rules (measured: 1.2e-7 on the momentum, the
    parameters equal bit for bit): the owner runs Newton-Schulz on the gathered matrix
    exactly as one process does, and its input is the pre-stage's bfloat16 buffer, so
    the gradients' last-bit differences vanish unless they flip a bf16 rounding. Such a
    flip (2^-8 of one element's update) would show as ~1e-5 here: this case has none, and
    the check is deterministic (the same data and kernels every run)."""
    ref = _one_process("muon")
    for rank in range(2):
        _assert_close(load(rules_run, "muon", rank), ref, 1e-6, f"Muon rank {rank}")
    # per step, the bytes each rank hands to gather and scatter: the 7x5 weight (rows 4 + 3,
    # padded to 4) is owned by rank 0, the 3x7 one (rows 2 + 1, padded to 2) by rank 1
    # (round robin); each rank sends its padded bf16 pre-stage shard to the owner and the
    # owner scatters the padded bf16 result to both ranks (its own piece included)
    big, small = 4 * 5 * 2, 2 * 7 * 2
    per_step = [big + 2 * big + small, big + small + 2 * small]
    sent = [load(rules_run, "muon-matrix-bytes", rank) for rank in range(2)]
    assert sent == [workers.DP_STEPS * b for b in per_step]


@pytest.fixture(scope="module")
def four_ranks():
    return run_ranks(fsdp_workers.rules, 4, ("scopes", "means"), timeout_s=55)


@pytest.mark.parametrize("kind", ["scopes", "means"])
def test_every_scope_on_four_ranks_with_an_empty_shard(four_ranks, kind):
    """4 ranks: the 3-row weight and the 3-element bias leave rank 3 an empty shard (its
    partials are a sum's 0 and a max's -inf; no kernel runs on it). Sums, maxima, rows,
    columns, group (on numba) and means (element counts: the torch backend, see
    shards.shapes_differ)."""
    out = four_ranks
    ref = _one_process(kind)
    for rank in range(4):
        _assert_close(load(out, kind, rank), ref, 1e-6, f"{kind} rank {rank}")


def test_hsdp_replicates_over_one_mesh_dimension_and_shards_over_the_other():
    """4 ranks as a (2 replicas, 2 shards) mesh: partials are combined over the shard
    dimension only, matrices gathered within their shard group."""
    kinds = ("lamb", "muon", "clip")
    out = run_ranks(fsdp_workers.rules, 4, kinds, (2, 2), timeout_s=55)
    assert load(out, "placements", 0) == "(Replicate(), Shard(dim=0))"
    for kind in kinds:
        ref = _one_process(kind)
        for rank in range(4):
            got = load(out, kind, rank)
            for a, b in zip(got["params"], ref["params"]):
                assert norm_rel(a, b) < 1e-6, f"HSDP {kind} rank {rank}"


def test_clipping_spans_every_group_and_rank(rules_run):
    """ClippedSGD with decay / no-decay groups equals clip_grad_norm_ over all parameters
    then torch.optim.SGD, both under FSDP2 and in one process."""
    model = workers.make_model()
    fsdp_workers.clip_reference(model)
    ref = [p.detach() for p in model.parameters()]
    mine = _one_process("clip")
    for a, b in zip(mine["params"], ref):
        assert norm_rel(a, b) < 1e-6
    for rank in range(2):
        for a, b in zip(load(rules_run, "clip", rank)["params"], ref):
            assert norm_rel(a, b) < 1e-6, f"rank {rank}"


def test_dcp_reshards_two_ranks_to_one_and_back():
    """Saved on 2 ranks, loaded on 1 (each state now one whole shard), trained a step there
    and saved again, loaded on 2 ranks: bit-exact states every time."""
    out = run_ranks(fsdp_workers.dcp_save, 2, timeout_s=55)
    run_ranks(fsdp_workers.dcp_load, 1, "dcp-2", out_dir=out, timeout_s=55)
    run_ranks(fsdp_workers.dcp_load, 2, "after-dcp-2", out_dir=out, timeout_s=55)
    _assert_equal(load(out, "loaded-dcp-2", 0), load(out, "saved", 0))
    assert set(load(out, "placements-dcp-2", 0)) == {"(Shard(dim=0),)"}
    # it trains on: one more step on 1 rank equals one process's fifth step
    model = workers.make_model()
    opt = optforge.AdamW(model.parameters(), backend="numba", **workers.ADAMW)
    workers._train(model, opt, 0, 1, steps=workers.DP_STEPS + 1)
    for a, b in zip(load(out, "continued-dcp-2", 0)["params"], model.parameters()):
        assert norm_rel(a, b.detach()) < 1e-6
    for rank in range(2):  # and back: 1 rank's checkpoint on 2 ranks
        _assert_equal(load(out, "loaded-after-dcp-2", rank), load(out, "continued-dcp-2", 0))


def _assert_equal(got: dict, want: dict) -> None:
    for a, b in zip(got["params"], want["params"]):
        assert torch.equal(a, b)
    for sa, sb in zip(got["states"], want["states"]):
        assert sa.keys() == sb.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
