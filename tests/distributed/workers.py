"""What each rank runs in the multi-process tests, and the model and data they share with
the single-process references (so both sides build exactly the same things).

Functions here run in spawned processes: module level, picklable, results saved to
``out_dir`` with ``spawn.save``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

import optforge
from tests.distributed.spawn import save

# (class, constructor keywords): every sign-vote configuration the tests run
SIGN_CONFIGS = {
    "lion-vote": ("DistributedLion", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1,
                                          aggregation="vote")),
    "lion-average": ("DistributedLion", dict(lr=0.01, weight_decay=0.1, aggregation="average")),
    "signum-vote": ("SignumMV", dict(lr=0.01, momentum=0.9, weight_decay=0.05)),
    "signsgd-vote": ("SignumMV", dict(lr=0.01, momentum=0.0)),
}
SIGN_STEPS = 5


def make_model(seed: int = 0) -> torch.nn.Module:
    # odd sizes: 5*7 + 7 + 7*3 + 3 = 66 elements, not a multiple of 8 (a padded last byte)
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def batch(step: int, worker: int, rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Worker ``worker``'s rows of step ``step``'s global batch (same on both sides)."""
    gen = torch.Generator().manual_seed(1000 * step + worker)
    return torch.randn(rows, 5, generator=gen), torch.randn(rows, 3, generator=gen)


def loss_of(model, x, y) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


def snapshot(model, opt) -> dict:
    params = [p.detach().clone() for p in model.parameters()]
    states = [{k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()]
    return {"params": params, "states": states}


def sign_vote(rank: int, world: int, out_dir: str) -> None:
    """Every sign-vote configuration, SIGN_STEPS steps on this rank's own data (no DDP)."""
    for name, (cls, kw) in SIGN_CONFIGS.items():
        model = make_model()
        opt = getattr(optforge, cls)(model.parameters(), **kw)
        for k in range(SIGN_STEPS):
            x, y = batch(k, rank)
            opt.zero_grad()
            if k == 2:  # the closure path: gradients computed inside step()
                def closure():
                    loss = loss_of(model, x, y)
                    loss.backward()
                    return loss
                opt.step(closure)
            else:
                loss_of(model, x, y).backward()
                opt.step()
        save(out_dir, name, rank, snapshot(model, opt))
    # the documented DDP way: every forward and backward under no_sync(), so DDP never
    # all-reduces a gradient (it only broadcast the initial parameters)
    from torch.nn.parallel import DistributedDataParallel as DDP
    cls, kw = SIGN_CONFIGS["lion-vote"]
    model = make_model(seed=rank)  # different on each rank until DDP broadcasts rank 0's
    ddp = DDP(model)
    opt = getattr(optforge, cls)(ddp.parameters(), **kw)
    for k in range(SIGN_STEPS):
        opt.zero_grad()
        with ddp.no_sync():
            loss_of(ddp, *batch(k, rank)).backward()
        opt.step()
    save(out_dir, "lion-vote-ddp-no-sync", rank, snapshot(model, opt))


def sign_vote_errors(rank: int, world: int, out_dir: str) -> None:
    """Ranks that disagree make every rank raise before anything moves."""
    found = {}
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    # 0. rank 1's optimizer lacks the last bias: the step's verdict refuses
    loss_of(model, *batch(0, rank)).backward()
    params = list(model.parameters())
    other = optforge.DistributedLion(params[:3] if rank == 1 else params, lr=0.01)
    try:
        other.step()
    except RuntimeError as e:
        found["sizes"] = str(e)
    model.zero_grad(set_to_none=True)
    opt = optforge.DistributedLion(model.parameters(), lr=0.01)
    # 1. rank 1 has no gradient for the last bias: the ranks' "present" bits differ
    loss_of(model, *batch(0, rank)).backward()
    if rank == 1:
        model[2].bias.grad = None
    try:
        opt.step()
    except RuntimeError as e:
        found["count"] = str(e)
    found["count_unmoved"] = all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    found["count_no_state"] = len(opt.state) == len(other.state) == 0
    # 2. a NaN gradient on rank 0 only: every rank refuses, or skips with skip_nonfinite
    opt.zero_grad()
    loss_of(model, *batch(1, rank)).backward()
    if rank == 0:
        model[0].weight.grad[0, 0] = float("nan")
    try:
        opt.step()
    except RuntimeError as e:
        found["nan"] = str(e)
    skipping = optforge.DistributedLion(model.parameters(), lr=0.01, skip_nonfinite=True)
    skipping.step()
    found["skips"] = skipping.param_groups[0]["nonfinite_skips"]
    found["nan_unmoved"] = all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    # 3. the group still works afterwards: a clean step moves every rank alike
    opt.zero_grad()
    loss_of(model, *batch(2, rank)).backward()
    opt.step()
    found["after"] = [p.detach().clone() for p in model.parameters()]
    save(out_dir, "errors", rank, found)


def barrier_sum(rank: int, world: int, out_dir: str) -> None:
    """The smallest collective (a sanity check of the spawn helper itself)."""
    t = torch.tensor([rank + 1.0])
    dist.all_reduce(t)
    save(out_dir, "sum", rank, t)


# ---- torch's data parallelism around an optforge optimizer --------------------------------
ADAMW = dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
DP_STEPS = 4
GLOBAL_ROWS = 8  # split evenly over 2 or 4 ranks: the mean of rank means is the global mean


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    return batch(step, 99, rows=GLOBAL_ROWS)


def rank_rows(step: int, rank: int, world: int):
    x, y = global_batch(step)
    per = GLOBAL_ROWS // world
    return x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]


def _train(module, opt, rank, world, steps=DP_STEPS, start=0):
    for k in range(start, start + steps):
        opt.zero_grad()
        loss_of(module, *rank_rows(k, rank, world)).backward()
        opt.step()


def ddp_zero_dcp(rank: int, world: int, out_dir: str) -> None:
    """DDP + optforge.AdamW; a DCP save and 2-rank load of its state; ZeRO + optforge.AdamW."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                         get_optimizer_state_dict,
                                                         set_model_state_dict,
                                                         set_optimizer_state_dict)
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = make_model()
    ddp = DDP(model)
    opt = optforge.AdamW(ddp.parameters(), **ADAMW)
    _train(ddp, opt, rank, world)
    save(out_dir, "ddp", rank, snapshot(model, opt))

    ckpt = f"{out_dir}/dcp"
    dcp.save({"model": get_model_state_dict(ddp), "optim": get_optimizer_state_dict(ddp, opt)},
             checkpoint_id=ckpt)
    # load on the same 2 ranks into another model and optimizer (other init, fresh state)
    other = DDP(make_model(seed=5))
    opt2 = optforge.AdamW(other.parameters(), lr=0.5)
    sd = {"model": get_model_state_dict(other), "optim": get_optimizer_state_dict(other, opt2)}
    dcp.load(sd, checkpoint_id=ckpt)
    set_model_state_dict(other, sd["model"])
    set_optimizer_state_dict(other, opt2, sd["optim"])
    save(out_dir, "dcp-loaded", rank, snapshot(other.module, opt2))
    save(out_dir, "dcp-lr", rank, opt2.param_groups[0]["lr"])

    model3 = make_model()
    ddp3 = DDP(model3)
    zero = ZeroRedundancyOptimizer(ddp3.parameters(), optimizer_class=optforge.AdamW, **ADAMW)
    _train(ddp3, zero, rank, world)
    owned = [i for i, p in enumerate(model3.parameters()) if p in zero.optim.state]
    save(out_dir, "zero", rank, {"params": [p.detach().clone() for p in model3.parameters()],
                                 "owned": owned, "inner": type(zero.optim).__name__})
