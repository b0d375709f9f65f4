"""Rules with matrix states (Shampoo's and SOAP's factors) on FSDP2 shards: what each rank
runs in tests/distributed/test_shard_matrix_states.py, and the optimizers and gradients
both sides use.

The gradients are fixed tensors handed to both sides (on the ranks as DTensors placed
like their parameters), not backward passes: FSDP2's reduce-scattered mean differs from
one process's mean by a few ulps, and a factor's eigenbasis (SOAP) is discontinuous
where eigenvalues repeat (a factor of a few steps' gradients is rank-deficient), so
those ulps would turn QR's columns around and hide what this checks: that the sharded
step computes what one process computes.
"""
from __future__ import annotations

import torch

import optforge
from tests.distributed.fsdp_workers import full, shard
from tests.distributed.spawn import save
from tests.distributed.workers import make_model

KINDS = ("shampoo", "soap")
STEPS = 4


def make_optimizer(kind: str, model):
    """The matrix rule on the 2-D weights, AdamW (numba) on the biases."""
    groups = optforge.split_matrix_params(model, other=optforge.AdamW, lr=0.01)
    if kind == "shampoo":
        return optforge.Shampoo(groups, lr=0.05, weight_decay=0.01, precondition_frequency=2)
    return optforge.SOAP(groups, lr=0.01, precondition_frequency=2)


def gradients(step: int, model) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(50 + step)
    return [torch.randn(p.shape, generator=gen) for p in model.parameters()]


def train(model, opt, sharded: bool) -> None:
    from torch.distributed.tensor import distribute_tensor
    for k in range(STEPS):
        for p, g in zip(model.parameters(), gradients(k, model)):
            p.grad = distribute_tensor(g, p.device_mesh, p.placements) if sharded else g
        opt.step()


def matrix_states(rank: int, world: int, out_dir: str, mesh_shape=None) -> None:
    """Every kind on FSDP2 shards (``mesh_shape`` (replicas, shards): HSDP)."""
    for kind in KINDS:
        model = shard(make_model(), mesh_shape)
        opt = make_optimizer(kind, model)
        train(model, opt, sharded=True)
        weight = next(model.parameters())
        save(out_dir, f"{kind}-placements", rank,
             {k: (str(v.placements), tuple(v.to_local().shape))
              for k, v in opt.state[weight].items() if hasattr(v, "placements")})
        save(out_dir, kind, rank, full(model, opt))


def matrix_states_dcp(rank: int, world: int, out_dir: str) -> None:
    """Shampoo's sharded factors through DCP: saved on the ranks, loaded into a fresh model
    and optimizer, then both step on: the same bits."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                         get_optimizer_state_dict,
                                                         set_model_state_dict,
                                                         set_optimizer_state_dict)
    model = shard(make_model())
    opt = make_optimizer("shampoo", model)
    train(model, opt, sharded=True)
    dcp.save({"model": get_model_state_dict(model),
              "optim": get_optimizer_state_dict(model, opt)}, checkpoint_id=f"{out_dir}/ckpt")
    other = shard(make_model(seed=3))
    opt2 = make_optimizer("shampoo", other)
    sd = {"model": get_model_state_dict(other), "optim": get_optimizer_state_dict(other, opt2)}
    dcp.load(sd, checkpoint_id=f"{out_dir}/ckpt")
    set_model_state_dict(other, sd["model"])
    set_optimizer_state_dict(other, opt2, sd["optim"])
    for m, o in ((model, opt), (other, opt2)):
        train(m, o, sharded=True)
    save(out_dir, "dcp", rank, {"original": full(model, opt), "loaded": full(other, opt2)})
