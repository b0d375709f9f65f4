"""An error on one rank must not hang the others (runtime/step_verdict.py): on 2 gloo
ranks, one rank alone refuses a step in its check stage (a float64 gradient), before the
step's first collective (FSDP2 LAMB: the reduce stage's all-reduce; DistributedLion: the
sign all-gather). Every rank raises, the failing one its own error with a note naming its
rank, the other a StepRefusedError naming the failing rank and its error; nothing moves,
and the next step works on both."""
from __future__ import annotations

import time

import pytest
import torch

from tests.distributed import verdict_workers
from tests.distributed.spawn import load, run_ranks

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


def test_one_rank_s_error_raises_on_every_rank_and_moves_nothing():
    start = time.monotonic()
    # collective_s: a rank left waiting would fail after 20 s, not pass
    out = run_ranks(verdict_workers.bad_gradient, 2, timeout_s=55, collective_s=20)
    assert time.monotonic() - start < 55
    for case, bad in (("lamb", 1), ("lion", 0)):
        for rank in range(2):
            found = load(out, case, rank)
            kind, message, notes = found["error"]
            if rank == bad:
                assert kind == "RuntimeError", (case, kind, message)
                assert "gradient (5, 7) torch.float64" in message or \
                    "gradient torch.Size([4, 7]) torch.float64" in message or \
                    "torch.float64 on cpu does not match the parameter" in message, message
                assert notes == [f"(rank {bad} of 2: every rank of the process group refused "
                                 "this step; no rank has stepped)"]
            else:
                assert kind == "StepRefusedError", (case, kind, message)
                assert message.startswith(f"rank {rank}: rank(s) [{bad}] of 2 could not step, "
                                          f"so no rank has stepped (rank {bad}: RuntimeError:")
                assert "torch.float64 on cpu does not match the parameter" in message
            assert found["unmoved"] and found["no_state"], (case, rank)
            assert found["moved"], (case, rank)
    for rank in range(2):  # every rank refuses a DTensor itself
        found = load(out, "lion-dtensor", rank)
        assert found["unmoved"] and found["no_state"]
        kind, message, _ = found["error"]
        assert kind == "TypeError" and "is a DTensor (FSDP2 / tensor parallel); the rule's " \
            "collective 'vote' reduces over data-parallel workers" in message


def test_the_verdict_is_one_small_all_reduce_on_the_distributed_path_only():
    out = run_ranks(verdict_workers.verdict_cost, 2, timeout_s=55)
    for rank in range(2):
        cost = load(out, "cost", rank)
        assert cost["plain"] == cost["adamw"] == []  # no collective in the step: no verdict
        # 2 ranks' error flags + 3 facts and their negations
        assert cost["lamb"] == [((2 + 2 * 3,), torch.int64)]
        print(f"rank {rank}: FSDP2 LAMB step {cost['with']:.0f} us with the verdict, "
              f"{cost['without']:.0f} us without; the all-reduce alone "
              f"{cost['all_reduce']:.0f} us (medians, interleaved)")


def test_a_factorization_failing_on_one_owner_raises_on_every_rank():
    """The matrix stage of a sharded weight runs on its owner only: a Cholesky failing
    there (a singular g g^T) must not leave the other rank waiting in the scatter."""
    out = run_ranks(verdict_workers.failing_owner, 2, timeout_s=55, collective_s=20)
    kinds = {}
    for rank in range(2):
        found = load(out, "owner", rank)
        kind, message, notes = found["error"]
        kinds[rank] = kind
        assert found["weights_unmoved"], rank
        if kind == "StepRefusedError":
            assert "rank(s) [0] of 2 could not step, so this bucket's parameters and states " \
                "were not stepped" in message and "cholesky" in message.lower(), message
        else:
            assert "cholesky" in message.lower() and "refused this step" in notes[0], message
    assert kinds[1] == "StepRefusedError" and kinds[0] != "StepRefusedError", kinds
