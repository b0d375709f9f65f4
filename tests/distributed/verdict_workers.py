"""What each rank runs in tests/distributed/test_step_verdict.py: one rank alone refuses a
distributed step in its check stage; every rank must raise, nothing may move, and the
group must still work afterwards. Also the verdict's cost per step."""
from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

import optforge
from tests.distributed.fsdp_workers import LAMB, shard
from tests.distributed.spawn import save
from tests.distributed.workers import loss_of, make_model, rank_rows


def _outcome(opt, model, bad_rank: int, rank: int, world: int, then: bool = True) -> dict:
    """One step in which ``bad_rank``'s first gradient is float64; then (``then``) a clean
    step."""
    def local(t):
        return (t.to_local() if hasattr(t, "to_local") else t).detach().clone()
    loss_of(model, *rank_rows(0, rank, world)).backward()
    first = next(model.parameters())
    if rank == bad_rank:  # (torch refuses such a gradient unless told to allow any dtype)
        first.grad_dtype = None
        first.grad = first.grad.to(torch.float64)
    before = [local(p) for p in model.parameters()]
    found = {}
    try:
        opt.step()
    except Exception as e:  # noqa: BLE001 - the test compares types and messages
        found["error"] = (type(e).__name__, str(e), list(getattr(e, "__notes__", [])))
    found["unmoved"] = all(torch.equal(local(p), b) for p, b in zip(model.parameters(), before))
    found["no_state"] = not opt.state
    if not then:
        return found
    opt.zero_grad()
    loss_of(model, *rank_rows(1, rank, world)).backward()
    opt.step()  # the group still works: a clean step on every rank
    found["moved"] = not all(torch.equal(local(p), b)
                             for p, b in zip(model.parameters(), before))
    return found


def bad_gradient(rank: int, world: int, out_dir: str) -> None:
    # FSDP2 LAMB: its first collective is the reduce stage's all-reduce of shard partials
    model = shard(make_model())
    opt = optforge.LAMB(model.parameters(), backend="numba", **LAMB)
    save(out_dir, "lamb", rank, _outcome(opt, model, 1, rank, world))
    # DistributedLion: its first collective is the all-gather of the sign bits
    model = make_model()
    opt = optforge.DistributedLion(model.parameters(), lr=0.01)
    save(out_dir, "lion", rank, _outcome(opt, model, 0, rank, world))
    # a rule with a collective on FSDP2 shards: refused by every rank itself
    model = shard(make_model())
    opt = optforge.DistributedLion(model.parameters(), lr=0.01)
    save(out_dir, "lion-dtensor", rank, _outcome(opt, model, -1, rank, world, then=False))


class _Counting:
    """torch.distributed with the all-reduces the verdict issues counted (shape, dtype)."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def all_reduce(self, tensor, *args, **kwargs):
        self.calls.append((tuple(tensor.shape), tensor.dtype))
        return self.real.all_reduce(tensor, *args, **kwargs)


def verdict_cost(rank: int, world: int, out_dir: str, steps: int = 40) -> None:
    """What the verdict sends per step (plain AdamW in a process group, FSDP2 AdamW: no
    collective in their steps, no verdict; FSDP2 LAMB: one), and the median step time of
    FSDP2 LAMB with and without it, interleaved, and of its all-reduce alone."""
    from optforge.runtime import step_verdict
    counting = step_verdict.dist = _Counting(dist)
    plain_model = make_model()
    plain = optforge.AdamW(plain_model.parameters(), backend="numba", lr=1e-3)
    loss_of(plain_model, *rank_rows(0, rank, world)).backward()
    plain.step()
    plain_calls = list(counting.calls)
    model = shard(make_model())
    opt = optforge.AdamW(model.parameters(), backend="numba", lr=1e-3)
    loss_of(model, *rank_rows(0, rank, world)).backward()
    opt.step()
    adamw_calls = list(counting.calls)
    opt = optforge.LAMB(model.parameters(), backend="numba", **LAMB)
    opt.step()
    lamb_calls = list(counting.calls)
    step_verdict.dist = dist
    real = step_verdict.verdict_group
    times = {"with": [], "without": [], "all_reduce": []}
    for k in range(steps + 3):
        for mode in ("with", "without"):
            step_verdict.verdict_group = real if mode == "with" else (lambda opt, compiled: None)
            dist.barrier()
            t0 = time.perf_counter()
            opt.step()
            if k >= 3:
                times[mode].append(time.perf_counter() - t0)
        flags = torch.zeros(5, dtype=torch.int64)
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if k >= 3:
            times["all_reduce"].append(time.perf_counter() - t0)
    step_verdict.verdict_group = real
    save(out_dir, "cost", rank, {"plain": plain_calls, "adamw": adamw_calls, "lamb": lamb_calls,
                                 **{k: 1e6 * statistics.median(v) for k, v in times.items()}})


def inverse_rule(lr=0.01):
    """A matrix stage that fails where g g^T is singular (Cholesky)."""
    from optforge.dsl import Rule, grad, inverse, matmul, param, transpose
    g = grad()
    return Rule(param() - lr * matmul(inverse(matmul(g, transpose(g))), g))


def failing_owner(rank: int, world: int, out_dir: str) -> None:
    """Weight 0 (7x5, owned by rank 0) gets a gradient with zero rows, so g g^T is
    singular; weight 1 (3x7, owned by rank 1) a full-rank one."""
    from torch.distributed.tensor import distribute_tensor
    model = shard(make_model())
    groups = optforge.split_matrix_params(model, other=optforge.AdamW, lr=0.01)
    opt = optforge.Optimizer(groups, inverse_rule)
    gen = torch.Generator().manual_seed(3)
    for p in model.parameters():
        g = torch.randn(p.shape, generator=gen)
        if p.dim() == 2 and p.shape[0] == 7:
            g[3:] = 0.0
        p.grad = distribute_tensor(g, p.device_mesh, p.placements)
    weights = [p for p in model.parameters() if p.dim() == 2]
    before = [p.to_local().detach().clone() for p in weights]
    found = {}
    try:
        opt.step()
    except Exception as e:  # noqa: BLE001 - the test compares types and messages
        found["error"] = (type(e).__name__, str(e), list(getattr(e, "__notes__", [])))
    found["weights_unmoved"] = all(torch.equal(p.to_local(), b) for p, b in zip(weights, before))
    save(out_dir, "owner", rank, found)
