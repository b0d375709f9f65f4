"""Matrix states on FSDP2 shards (runtime/shard_matrix_states.py): Shampoo and SOAP on 2
gloo ranks equal one process stepping the same global batch.

Each factor is a DTensor split by rows over the ranks; the owning rank of each weight
gathers the factors with the gradient, runs the matrix stage as one process would and
scatters the new rows back. Both sides get the same fixed gradients (see
matrix_state_workers), so the matrix stages compute on identical inputs, and the results
are the same bits (tolerance 0). With gradients from backward passes instead, FSDP2's
reduce-scatter changes them by a few ulps and the results differ by up to 1.5e-4
relative for Shampoo after 5 steps, and SOAP's eigenbases of rank-deficient factors turn
(measured: one QR 0.4 off): the discontinuity of an eigenbasis, not of the sharding.
"""
from __future__ import annotations

import pytest
import torch

from tests.conftest import norm_rel
from tests.distributed import matrix_state_workers, workers
from tests.distributed.spawn import load, run_ranks

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


@pytest.mark.parametrize("world, mesh_shape", [(2, None), (4, (2, 2))])
def test_shampoo_and_soap_on_shards_equal_one_process(world, mesh_shape):
    """2 ranks: FSDP2; 4 ranks: HSDP, (Replicate(), Shard(0)) on a 2x2 mesh, the factors'
    rows split over the shard dimension and replicated over the other."""
    out = run_ranks(matrix_state_workers.matrix_states, world, mesh_shape, timeout_s=55)
    for kind in matrix_state_workers.KINDS:
        model = workers.make_model()
        opt = matrix_state_workers.make_optimizer(kind, model)
        matrix_state_workers.train(model, opt, sharded=False)
        ref = workers.snapshot(model, opt)
        for rank in range(world):
            got = load(out, kind, rank)
            worst = 0.0
            for a, b in zip(got["params"], ref["params"]):
                worst = max(worst, norm_rel(a, b))
            for sa, sb in zip(got["states"], ref["states"]):
                assert sa.keys() == sb.keys(), kind
                for key in sa:
                    worst = max(worst, norm_rel(sa[key], sb[key]))
            assert worst == 0.0, (kind, rank, worst)
            placed = load(out, f"{kind}-placements", rank)
            # the first weight is 7x5: its (rows, rows) factor keeps 4 or 3 rows per rank
            first = rank % 2 == 0  # (the shard dimension's rank: HSDP's is the last)
            placement = "(Shard(dim=0),)" if mesh_shape is None else \
                "(Replicate(), Shard(dim=0))"
            assert placed["L"] == (placement, (4 if first else 3, 7)), placed
            assert placed["R"] == (placement, (3 if first else 2, 5)), placed


def test_sharded_factors_survive_a_dcp_round_trip():
    out = run_ranks(matrix_state_workers.matrix_states_dcp, 2, timeout_s=55)
    for rank in range(2):
        found = load(out, "dcp", rank)
        a, b = found["original"], found["loaded"]
        assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
        for sa, sb in zip(a["states"], b["states"]):
            assert sa.keys() == sb.keys()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), rank
        assert "L" in a["states"][0] and a["states"][0]["L"].shape == (7, 7)
