"""Checkpoint continuation for catalogue tests: one optimizer runs some steps, its
``state_dict`` goes through ``torch.save``/``torch.load`` into a fresh optimizer (the same
class, or torch.optim's / optforge's counterpart), which continues; an uninterrupted run
is the reference."""
import io

import torch


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def resumed_vs_uninterrupted(make_first, make_second, make_ref, shape=(7, 13), before=10,
                             after=10, seed=0):
    """``make_first`` runs ``before`` steps and is checkpointed; ``make_second`` loads the
    checkpoint and runs ``after`` steps; ``make_ref`` runs ``before + after`` steps without
    a break. Gradients: seeded noise plus a pull towards a centre, as
    ``conftest.run_side_by_side``, each computed at its own trajectory's parameter.
    Returns (resumed param, reference param, second optimizer, reference optimizer)."""
    gen = torch.Generator().manual_seed(seed)
    init = torch.randn(shape, generator=gen, dtype=torch.float64).float()
    centre = (1 + torch.rand(shape, generator=gen, dtype=torch.float64)).float()
    noise = [torch.randn(shape, generator=gen, dtype=torch.float64).float()
             for _ in range(before + after)]

    def run(opt, p, steps):
        for k in steps:
            p.grad = noise[k] + 0.5 * (p.detach() - centre)
            opt.step()

    p1, p_ref = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    first, ref = make_first([p1]), make_ref([p_ref])
    run(first, p1, range(before))
    run(ref, p_ref, range(before + after))
    p2 = torch.nn.Parameter(p1.detach().clone())
    second = make_second([p2])
    second.load_state_dict(_roundtrip(first.state_dict()))
    run(second, p2, range(before, before + after))
    return p2.detach(), p_ref.detach(), second, ref


def states_bitwise_equal(a, b) -> bool:
    """Two optimizers over one parameter each hold the same states, bit for bit."""
    (sa,), (sb,) = a.state.values(), b.state.values()
    return sa.keys() == sb.keys() and all(torch.equal(torch.as_tensor(sa[k]),
                                                      torch.as_tensor(sb[k])) for k in sa)
