"""torch's data parallelism around optforge optimizers, on 2 and 4 gloo ranks: DDP and
ZeroRedundancyOptimizer with optforge.AdamW equal one process stepping the same global
batch, and torch.distributed.checkpoint saves and loads an optforge optimizer's state,
on the same ranks and from 2 ranks into 1.

Tolerance 1e-6 relative: DDP averages the ranks' mean gradients in another order of
float32 additions than one process's mean over the global batch (a few ulps), which
Adam's normalisation carries into the update; the same bits are not expected.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import optforge
from tests.conftest import norm_rel
from tests.distributed import workers
from tests.distributed.spawn import load, run_ranks


def _reference(steps=workers.DP_STEPS):
    model = workers.make_model()
    opt = optforge.AdamW(model.parameters(), **workers.ADAMW)
    workers._train(model, opt, 0, 1, steps=steps)
    return model, opt


@pytest.fixture(scope="module", params=[2, 4])
def ranks(request):
    world = request.param
    return world, run_ranks(workers.ddp_zero_dcp, world, timeout_s=55)


def test_ddp_equals_one_process(ranks):
    world, out = ranks
    model, opt = _reference()
    ref = workers.snapshot(model, opt)
    for rank in range(world):
        got = load(out, "ddp", rank)
        for a, b in zip(got["params"], ref["params"]):
            assert norm_rel(a, b) < 1e-6, f"DDP rank {rank} of {world}"
        for sa, sb in zip(got["states"], ref["states"]):
            assert float(sa["step"]) == workers.DP_STEPS
            assert norm_rel(sa["exp_avg"], sb["exp_avg"]) < 1e-6
            assert norm_rel(sa["exp_avg_sq"], sb["exp_avg_sq"]) < 1e-6
    first = load(out, "ddp", 0)["params"]
    assert all(not torch.equal(a, b) for a, b in zip(first, workers.make_model().parameters()))


def test_zero_equals_one_process(ranks):
    world, out = ranks
    model, _ = _reference()
    owned = []
    for rank in range(world):
        got = load(out, "zero", rank)
        assert got["inner"] == "AdamW"
        owned += got["owned"]
        for a, b in zip(got["params"], model.parameters()):
            assert norm_rel(a, b.detach()) < 1e-6, f"ZeRO rank {rank} of {world}"
    # each parameter's state lives on exactly one rank: the optimizer state is sharded
    assert sorted(owned) == list(range(len(list(model.parameters()))))


def test_dcp_round_trip_on_the_same_ranks(ranks):
    world, out = ranks
    for rank in range(world):
        saved, loaded = load(out, "ddp", rank), load(out, "dcp-loaded", rank)
        assert load(out, "dcp-lr", rank) == workers.ADAMW["lr"]  # param_groups too
        for a, b in zip(loaded["params"], saved["params"]):
            assert torch.equal(a, b)
        for sa, sb in zip(loaded["states"], saved["states"]):
            assert sa.keys() == sb.keys() == {"step", "exp_avg", "exp_avg_sq"}
            for key in sa:
                assert torch.equal(sa[key], sb[key]), key


# DCP warns that it loads in a single process: that is the point here
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_dcp_loads_a_multi_rank_save_into_one_process(ranks):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                         get_optimizer_state_dict,
                                                         set_model_state_dict,
                                                         set_optimizer_state_dict)
    world, out = ranks
    assert not dist.is_initialized()  # a single process, no process group
    model = workers.make_model(seed=7)
    opt = optforge.AdamW(model.parameters(), lr=0.5)
    sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.load(sd, checkpoint_id=f"{out}/dcp")
    set_model_state_dict(model, sd["model"])
    set_optimizer_state_dict(model, opt, sd["optim"])
    saved = load(out, "ddp", 0)
    for p, a, sa in zip(model.parameters(), saved["params"], saved["states"]):
        assert torch.equal(p.detach(), a)
        assert opt.state[p].keys() == sa.keys()
        for key in sa:
            assert torch.equal(opt.state[p][key], sa[key]), key
    # and it trains on: one more step equals the one-process run's fifth step
    workers._train(model, opt, 0, 1, steps=1, start=workers.DP_STEPS)
    ref, _ = _reference(workers.DP_STEPS + 1)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert norm_rel(a.detach(), b.detach()) < 1e-6
