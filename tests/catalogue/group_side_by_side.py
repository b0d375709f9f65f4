"""Run two optimizers over the same multi-tensor param group (for rules with ``over="group"``
reductions, whose value depends on every tensor of the group)."""
import torch

from tests.conftest import SHAPES, norm_rel

GROUP_SHAPES = SHAPES + [(8, 3, 3, 3)]


def run_group_side_by_side(make_ours, make_ref, shapes=GROUP_SHAPES, steps=20, seed=0,
                           grad_scale=None):
    """``make_*(params)`` build optimizers over one list of tensors; gradients are seeded
    noise plus a pull towards a centre (as conftest.run_side_by_side), times
    ``grad_scale(k)`` at step k when given. Returns (ours, refs): lists of tensors."""
    gen = torch.Generator().manual_seed(seed)
    inits = [torch.randn(s, generator=gen, dtype=torch.float64).float() for s in shapes]
    centres = [(1 + torch.rand(s, generator=gen, dtype=torch.float64)).float() for s in shapes]
    ours = [torch.nn.Parameter(x.clone()) for x in inits]
    refs = [torch.nn.Parameter(x.clone()) for x in inits]
    o1, o2 = make_ours(ours), make_ref(refs)
    for k in range(steps):
        scale = 1.0 if grad_scale is None else grad_scale(k)
        for p, q, c in zip(ours, refs, centres):
            noise = torch.randn(q.shape, generator=gen, dtype=torch.float64).float()
            g = scale * (noise + 0.5 * (q.detach() - c))
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    return [p.detach() for p in ours], [q.detach() for q in refs]


def group_rel(ours, refs) -> float:
    """norm_rel of the concatenated parameters."""
    return norm_rel(torch.cat([p.reshape(-1) for p in ours]),
                    torch.cat([q.reshape(-1) for q in refs]))
