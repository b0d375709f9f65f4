"""DistributedLion and SignumMV on 2 and 4 gloo ranks equal a single-process simulation of
the same N workers bit for bit.

The simulation is written here from the papers (Liu et al. 2024, Algorithm 1; Bernstein
et al. 2019, Algorithm 1), without packing or collectives: N models, each worker's sign
vector sign(b1 m + (1 - b1) g) (a bit: +1 where the value is >= 0), the aggregate as
sign(sum) or mean of the N vectors in float32, handed to each simulated worker's
optimizer through step(inputs={"vote": ...}). The update kernel is the same on both
sides (its arithmetic is checked against Lion and Signum below), so any difference is
the communication: packing, byte order, gather order, aggregation. The documented DDP
way (ranks built differently, DDP's initial broadcast, every backward under no_sync())
gives the same bits too.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

import optforge
from tests.distributed import workers
from tests.distributed.spawn import load, run_ranks


def _signs(value: torch.Tensor) -> torch.Tensor:
    return torch.where(value >= 0, 1.0, -1.0)


def _simulate(cls: str, kw: dict, world: int) -> list[dict]:
    """N workers in one process; returns each worker's snapshot."""
    how = kw.get("aggregation", "vote")
    models = [workers.make_model() for _ in range(world)]
    opts = [getattr(optforge, cls)(m.parameters(), **kw) for m in models]
    for k in range(workers.SIGN_STEPS):
        signals = []
        for w, (model, opt) in enumerate(zip(models, opts)):
            opt.zero_grad()
            workers.loss_of(model, *workers.batch(k, w)).backward()
            per_param = []
            for p in model.parameters():
                st, g = opt.state.get(p, {}), p.grad
                if cls == "DistributedLion":
                    b1 = kw.get("betas", (0.9, 0.99))[0]
                    m = st.get("exp_avg", torch.zeros_like(p))
                else:
                    b1 = kw["momentum"]
                    m = st.get("momentum_buffer", torch.zeros_like(p))
                per_param.append(_signs(b1 * m + (1 - b1) * g))
            signals.append(per_param)
        for model, opt in zip(models, opts):
            vote = {}
            for j, p in enumerate(model.parameters()):
                total = torch.stack([signals[w][j] for w in range(world)]).sum(0)
                vote[p] = torch.sign(total) if how == "vote" else total / world
            opt.step(inputs={"vote": vote})
    return [workers.snapshot(m, o) for m, o in zip(models, opts)]


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_equal_the_simulation_bit_for_bit(world):
    start = time.monotonic()
    out = run_ranks(workers.sign_vote, world, timeout_s=55)
    elapsed = time.monotonic() - start
    for name, (cls, kw) in workers.SIGN_CONFIGS.items():
        sim = _simulate(cls, kw, world)
        moved = False
        for rank in range(world):
            got = load(out, name, rank)
            for a, b in zip(got["params"], sim[rank]["params"]):
                assert torch.equal(a, b), f"{name}, {world} ranks: rank {rank}'s parameters"
            for sa, sb in zip(got["states"], sim[rank]["states"]):
                assert sa.keys() == sb.keys()
                for key in sa:  # each worker's own momentum
                    assert torch.equal(sa[key], sb[key]), f"{name}: rank {rank}'s {key}"
            moved |= any(not torch.equal(a, b) for a, b in
                         zip(got["params"], workers.make_model().parameters()))
        assert moved, name
        # the workers really disagree (ties and mixed votes happen), else a test of
        # aggregation would not be one
        m0 = load(out, name, 0)["states"][0]
        m1 = load(out, name, 1)["states"][0]
        assert any(not torch.equal(m0[k], m1[k]) for k in m0 if k != "step")
        if name == "lion-vote":  # DDP under no_sync(): the same bits as plain models
            for rank in range(world):
                got = load(out, "lion-vote-ddp-no-sync", rank)
                for a, b in zip(got["params"] + [s[k] for s in got["states"] for k in s],
                                sim[rank]["params"] + [s[k] for s in sim[rank]["states"]
                                                       for k in s]):
                    assert torch.equal(a, b), f"DDP + no_sync, rank {rank}"
    assert elapsed < 55


def test_disagreeing_ranks_raise_on_every_rank_and_change_nothing():
    out = run_ranks(workers.sign_vote_errors, 2, timeout_s=55)
    results = [load(out, "errors", r) for r in range(2)]
    for rank, found in enumerate(results):
        assert f"rank {rank}: the ranks would exchange different data" in found["count"]
        assert "parameter 3 of group 0 has a gradient on some ranks and not on others" \
            in found["count"]
        assert "hold different parameters ([[4], [3]]: parameters per param group" \
            in found["sizes"]
        assert found["count_unmoved"] and found["count_no_state"]
        assert "rank(s) [0] of the process group have NaN or Inf" in found["nan"]
        assert "no rank has stepped" in found["nan"]
        assert found["skips"] == 1 and found["nan_unmoved"]
    for a, b in zip(*(r["after"] for r in results)):  # still in step with each other
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in
               zip(results[0]["after"], workers.make_model().parameters()))


def test_without_a_process_group_one_worker_votes_alone():
    """No process group: the collective is the identity, a vote of one worker's bits."""
    assert not dist.is_initialized()
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(40, 3))
    p2 = torch.nn.Parameter(p1.detach().clone())
    ours = optforge.DistributedLion([p1], lr=0.01, weight_decay=0.1)
    ref = optforge.Lion([p2], lr=0.01, weight_decay=0.1)
    for _ in range(3):
        g = torch.randn(p1.shape)
        g[0, 0] = 0.0  # a bit has no zero: the worker votes +1 where Lion does not move
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    moved = (p1.detach() - p2.detach()).abs()
    assert moved[0, 0] > 0 and torch.equal(moved.flatten()[1:], torch.zeros(119))
    with pytest.raises(ValueError, match="aggregation='mean'"):
        optforge.SignumMV([p1], aggregation="mean")


@pytest.fixture
def one_rank(tmp_path):
    """A world of one in this process (FileStore): the collectives run, trivially."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0,
                            world_size=1, timeout=timedelta(seconds=30))
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("how", ["vote", "average"])
def test_one_worker_is_lion_and_signum(one_rank, how, backend):
    """With one worker, the vote (or average) of one sign vector is that sign: Distributed
    Lion is Lion and SignumMV without weight decay is Signum (the catalogue's, from the
    papers). The gradients never make an exact 0, where a bit would send +1."""
    gen = torch.Generator().manual_seed(3)
    for ours_cls, ref_cls, kw in [
            (optforge.DistributedLion, optforge.Lion,
             dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.3)),
            (optforge.DistributedLion, optforge.Lion, dict(lr=0.01, maximize=True)),
            (optforge.SignumMV, optforge.Signum, dict(lr=0.01, momentum=0.7)),
            (optforge.SignumMV, optforge.Signum, dict(lr=0.01, momentum=0.0, maximize=True))]:
        init = torch.randn(257, 3, generator=gen)
        p1, p2 = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
        ours = ours_cls([p1], aggregation=how, backend=backend, **kw)
        ref = ref_cls([p2], backend=backend, **kw)
        for _ in range(10):
            g = torch.randn(p1.shape, generator=gen) + 0.5 * p2.detach()
            p1.grad, p2.grad = g.clone(), g.clone()
            ours.step()
            ref.step()
        rel = (p1.detach().double() - p2.detach().double()).norm() / p2.detach().double().norm()
        assert rel < 1e-6, (ours_cls.__name__, how, float(rel))
        assert not torch.equal(p1.detach(), init)


@pytest.mark.parametrize("cls, twin", [("DistributedLion", "Lion"), ("SignumMV", "Signum")])
def test_checkpoints_round_trip_and_the_twin_s_load(cls, twin):
    """A state_dict saved mid-run resumes exactly, and the single-worker twin's checkpoint
    (Lion's exp_avg, Signum's momentum_buffer) loads: one process, no weight decay (Signum
    adds it to the gradient), gradients never exactly 0 (a bit sends 0 as +1)."""
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(6, 5, generator=gen) + 3.0 for _ in range(6)]
    init = torch.randn(6, 5, generator=gen)

    def run(make, start=init, state=None, steps=grads):
        p = torch.nn.Parameter(start.clone())
        opt = make([p])
        if state is not None:
            opt.load_state_dict(state)
        for g in steps:
            p.grad = g.clone()
            opt.step()
        return p.detach(), opt

    def ours(ps):
        return getattr(optforge, cls)(ps, lr=0.01)

    def theirs(ps):
        return getattr(optforge, twin)(ps, lr=0.01)
    whole, _ = run(ours)
    mid, half = run(ours, steps=grads[:3])
    resumed, opt = run(ours, mid, half.state_dict(), grads[3:])
    twin_mid, from_twin = run(theirs, steps=grads[:3])
    assert torch.equal(twin_mid, mid)  # one worker with no zero: the same first steps
    continued, _ = run(ours, twin_mid, from_twin.state_dict(), grads[3:])
    assert torch.equal(resumed, whole) and torch.equal(continued, whole)
    assert float(opt.state[opt.param_groups[0]["params"][0]]["step"]) == 6
