"""The DSL's collectives (allreduce fp32 / 1-bit, majority_vote) on 2 and 4 gloo ranks
against the same steps recomputed here in plain torch from every rank's gradients."""
from __future__ import annotations

import time

import pytest
import torch

from tests.distributed import collective_workers as cw
from tests.distributed.spawn import load, run_ranks

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


def _bits(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)  # a bit has no zero: 0 is sent as +1


def _reference(ranks: list[int]) -> list[torch.Tensor]:
    """The workers ``ranks`` stepping together (their parameters stay equal; each keeps
    its own momentum)."""
    params = cw.initial()
    momenta = [torch.zeros(cw.SHAPES[2]) for _ in ranks]
    for k in range(cw.STEPS):
        gs = [cw.grads(k, r) for r in ranks]
        mean = torch.stack([g[0] for g in gs]).sum(0) / len(ranks)
        votes = torch.stack([_bits(g[1]) for g in gs]).sum(0)
        momenta = [0.5 * m + 0.5 * g[2] for m, g in zip(momenta, gs)]
        ballot = torch.sign(torch.stack([_bits(-torch.sign(c)) for c in momenta]).sum(0))
        params = [params[0] - 0.1 * mean, params[1] - 0.1 * votes, params[2] - 0.1 * ballot]
    return params


@pytest.mark.parametrize("world", [2, 4])
def test_collectives_equal_plain_torch(world):
    start = time.monotonic()
    out = run_ranks(cw.run_dsl, world, timeout_s=55)
    cases = {"world": [list(range(world))] * world}
    if world == 4:
        cases["pair"] = [[0, 1], [0, 1], [2, 3], [2, 3]]
    for name, groups in cases.items():
        for rank in range(world):
            got = load(out, name, rank)
            want = _reference(groups[rank])
            torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)  # fp32 sums
            assert torch.equal(got[1], want[1]), (name, rank)  # exact integer counts
            assert torch.equal(got[2], want[2]), (name, rank)
    if world == 4:  # the pairs really differ from each other and from the world
        assert not torch.equal(load(out, "pair", 0)[1], load(out, "pair", 2)[1])
        assert not torch.equal(load(out, "pair", 0)[1], load(out, "world", 0)[1])
    assert time.monotonic() - start < 60
