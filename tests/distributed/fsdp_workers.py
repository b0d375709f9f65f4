"""What each rank runs in the FSDP2 tests (tests/distributed/test_fsdp2.py): the model and
data of tests/distributed/workers.py, sharded with ``fully_shard``; results saved to
``out_dir`` as full tensors (``full_tensor()``) so the test compares them with one process.
"""
from __future__ import annotations

import torch

import optforge
from tests.distributed.spawn import save
from tests.distributed.workers import ADAMW, DP_STEPS, loss_of, make_model, rank_rows


def shard(model: torch.nn.Module, mesh_shape: tuple | None = None) -> torch.nn.Module:
    """FSDP2 as a user writes it: each Linear its own unit, then the root. ``mesh_shape``
    (replicas, shards): HSDP, placements (Replicate(), Shard(0))."""
    from torch.distributed.fsdp import fully_shard
    mesh = None
    if mesh_shape is not None:
        from torch.distributed.device_mesh import init_device_mesh
        mesh = init_device_mesh("cpu", mesh_shape, mesh_dim_names=("replicate", "shard"))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def train(model, opt, rank: int, world: int, steps: int = DP_STEPS, start: int = 0) -> None:
    for k in range(start, start + steps):
        opt.zero_grad()
        loss_of(model, *rank_rows(k, rank, world)).backward()
        opt.step()


def full(model, opt) -> dict:
    """Parameters and states as full tensors (a collective: every rank calls it)."""
    def whole(t):
        return t.full_tensor() if hasattr(t, "full_tensor") else t.clone()
    params = [whole(p.detach()) for p in model.parameters()]
    states = [{k: whole(v) for k, v in opt.state[p].items()} for p in model.parameters()]
    return {"params": params, "states": states}


def local(model, opt) -> dict:
    """This rank's shards of the parameters and states."""
    params = [p.detach().to_local().clone() for p in model.parameters()]
    states = [{k: (v.to_local() if hasattr(v, "to_local") else v).clone()
               for k, v in opt.state[p].items()} for p in model.parameters()]
    return {"params": params, "states": states}


def adamw(rank: int, world: int, out_dir: str) -> None:
    """optforge.AdamW (numba) and torch.optim.AdamW on the same FSDP2 shards."""
    model, ref = shard(make_model()), shard(make_model())
    opt = optforge.AdamW(model.parameters(), backend="numba", **ADAMW)
    ref_opt = torch.optim.AdamW(ref.parameters(), **ADAMW)
    train(model, opt, rank, world)
    train(ref, ref_opt, rank, world)
    save(out_dir, "adamw-local", rank, local(model, opt))
    save(out_dir, "torch-local", rank, local(ref, ref_opt))
    save(out_dir, "adamw", rank, full(model, opt))
    save(out_dir, "placements", rank, [str(v.placements) for v in opt.state[
        next(model.parameters())].values() if hasattr(v, "placements")])


# ---- one rule of each kind, and global clipping, each against one process -----------------
LAMB = dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
MUON = dict(lr=0.02, weight_decay=0.1)
CLIP = dict(lr=0.1, momentum=0.9, max_norm=0.05)  # small enough that every step clips


def every_scope(lr=0.01):
    """Sums and maxima over a tensor, its rows, its columns and the group: reductions whose
    shard partials are all-reduced (sum or max), and rows that stay local under Shard(0)."""
    from optforge.dsl import Rule, abs, amax, grad, norm, param, total
    g = grad()
    u = (g / (norm(g) + 1e-3) + g / (amax(abs(g)) + 1e-3) + 0.1 * total(g, over="col")
         + g / (total(g * g, over="row") + 1e-3) + g / (norm(g, over="group") + 1e-3))
    return Rule(param() - lr * u)


def every_mean(lr=0.01):
    """Means: element counts over a tensor and its columns change under sharding."""
    from optforge.dsl import Rule, grad, mean, param
    g = grad()
    return Rule(param() - lr * (g - mean(g) + 0.5 * mean(g, over="col")
                                - 0.5 * mean(g, over="row")))


def clip_groups(model, decay: float = 0.1) -> list[dict]:
    """The usual decay / no-decay split: weights decay, biases do not."""
    return [{"params": [p for p in model.parameters() if p.dim() > 1], "weight_decay": decay},
            {"params": [p for p in model.parameters() if p.dim() <= 1], "weight_decay": 0.0}]


def make_optimizer(kind: str, model):
    """The optimizer of each test case, built the same way sharded and in one process."""
    if kind == "lamb":
        return optforge.LAMB(model.parameters(), backend="numba", **LAMB)
    if kind == "muon":  # Muon on the 2-D weights, AdamW (numba) on the biases
        return optforge.Muon(optforge.split_matrix_params(model, other=optforge.AdamW,
                                                          lr=0.01), **MUON)
    if kind == "clip":
        return optforge.ClippedSGD(clip_groups(model), backend="numba", **CLIP)
    if kind in ("scopes", "means"):
        rule = every_scope if kind == "scopes" else every_mean
        return optforge.Optimizer(model.parameters(), rule, backend="numba")
    raise ValueError(kind)


def rules(rank: int, world: int, out_dir: str, kinds: tuple, mesh_shape=None) -> None:
    """Each optimizer of ``kinds`` trained DP_STEPS steps on FSDP2 (or HSDP) shards."""
    import torch.distributed as dist
    from optforge.runtime import shard_matrix
    for kind in kinds:
        model = shard(make_model(), mesh_shape)
        opt = make_optimizer(kind, model)
        sent = _count_matrix_bytes(dist, shard_matrix)
        train(model, opt, rank, world)
        sent["on"] = False
        save(out_dir, kind, rank, full(model, opt))
        save(out_dir, f"{kind}-matrix-bytes", rank, sent["bytes"])
    save(out_dir, "placements", rank, str(next(model.parameters()).placements))


def _count_matrix_bytes(dist, module) -> dict:
    """Bytes this rank hands to the matrix stage's gather and scatter."""
    sent = {"bytes": 0, "on": True}

    class Counting:
        def __getattr__(self, name):
            return getattr(dist, name)

        def gather(self, t, *args, **kwargs):
            sent["bytes"] += t.numel() * t.element_size() if sent["on"] else 0
            return dist.gather(t, *args, **kwargs)

        def scatter(self, t, pieces=None, *args, **kwargs):
            if sent["on"] and pieces:
                sent["bytes"] += sum(x.numel() * x.element_size() for x in pieces)
            return dist.scatter(t, pieces, *args, **kwargs)

    original = module._Shards.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.dist = Counting()
    module._Shards.__init__ = init
    return sent


def clip_reference(model, steps: int = DP_STEPS) -> None:
    """torch.nn.utils.clip_grad_norm_ over every parameter, then torch.optim.SGD with the
    same decay / no-decay groups, on the global batch (one process)."""
    from tests.distributed.workers import global_batch
    kw = {k: v for k, v in CLIP.items() if k != "max_norm"}
    opt = torch.optim.SGD(clip_groups(model), **kw)
    for k in range(steps):
        opt.zero_grad()
        loss_of(model, *global_batch(k)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP["max_norm"])
        opt.step()


# ---- checkpoints: DCP save on N ranks, load on another number of ranks --------------------
def dcp_save(rank: int, world: int, out_dir: str) -> None:
    """Train FSDP2 + optforge.AdamW (numba), then save model and optimizer with DCP."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    model = shard(make_model())
    opt = optforge.AdamW(model.parameters(), backend="numba", **ADAMW)
    train(model, opt, rank, world)
    save(out_dir, "saved", rank, full(model, opt))
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=f"{out_dir}/dcp-{world}")


def dcp_load(rank: int, world: int, out_dir: str, source: str) -> None:
    """Load checkpoint ``source`` (saved on another number of ranks: another sharding) into
    a model built from another seed and a fresh optimizer, train one step on, and save
    that as checkpoint ``after-<source>``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model = shard(make_model(seed=5))
    opt = optforge.AdamW(model.parameters(), backend="numba", lr=0.5)
    model_sd, optim_sd = get_state_dict(model, opt)  # (creates the states: a zero-lr step)
    sd = {"model": model_sd, "optim": optim_sd}
    dcp.load(sd, checkpoint_id=f"{out_dir}/{source}")
    set_state_dict(model, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    save(out_dir, f"loaded-{source}", rank, full(model, opt))
    save(out_dir, f"placements-{source}", rank,
         [str(v.placements) for p in model.parameters() for k, v in opt.state[p].items()
          if k != "step"])
    train(model, opt, rank, world, steps=1, start=DP_STEPS)
    save(out_dir, f"continued-{source}", rank, full(model, opt))
    model_sd, optim_sd = get_state_dict(model, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=f"{out_dir}/after-{source}")
