"""Alignment per tensor in reduce-stage launches (kernels/triton/reduce.py, TileGroup).

A misaligned view (a slice of a flat buffer at an odd offset) must not make a bucket's
reduce loads scalar: the aligned tensors' tiles run in one launch with the 128-bit hint
(ALIGN=16), the view's in a launch of its own (ALIGN=1). Each tensor's partials land
where one launch would put them and combine in the same order, so the step gives the
bits of the same bucket made of fresh (aligned) tensors (compiled, the aligned ones';
the view's tiles may be laid out, hence summed, in another order without the hint).
The launches are recorded by wrapping the stage kernels (what was actually launched,
with which hint and tiles).
"""
import pytest
import torch

from tests.triton_env import DEVICE, INTERPRETED  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.compiled import compile_rule
from tests.conftest import norm_rel


class LaunchSpy:
    """Wraps a triton kernel: records (tensors of the launched tiles, ALIGN) per launch."""

    def __init__(self, fn, log):
        self.fn, self.log = fn, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            tiles, n = args[5], grid[0]  # the tile table passed, from the launch's first tile
            self.log.append((tuple(sorted({int(t) for t in tiles[:7 * n:7].tolist()})),
                             kwargs["ALIGN"]))
            return self.fn[grid](*args, **kwargs)
        return launch


def step_bucket(cls, shapes, misaligned: int | None, steps=2):
    """``steps`` of ``cls`` over fresh params of ``shapes``; tensor ``misaligned`` (if
    any) is a view 4 bytes past an aligned address. Returns (params and states, the
    reduce launches of the last step, the elementwise launch groups)."""
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) for s in shapes]
    params = []
    for j, x in enumerate(init):
        if j == misaligned:
            base = torch.zeros(x.numel() + 1, device=DEVICE)
            base[1:] = x.reshape(-1).to(DEVICE)
            params.append(torch.nn.Parameter(base[1:].view(x.shape)))
        else:
            params.append(torch.nn.Parameter(x.clone().to(DEVICE)))
    opt = cls(params, lr=0.01, backend="triton")
    compiled = compile_rule(cls.rule, cls.rule.default_variant)
    launcher = opt.launcher_for(compiled, DEVICE, torch.float32).inner
    kern = launcher.kernel(torch.float32)
    log: list = []
    originals = kern.reduce_fns  # (the launcher is shared by every optimizer of the rule)
    kern.reduce_fns = tuple(LaunchSpy(fn, log) for fn in originals)
    try:
        for _ in range(steps):
            log.clear()
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(DEVICE)
            opt.step()
    finally:
        kern.reduce_fns = originals
    layout = launcher._layouts[(DEVICE, tuple(p.numel() for p in params))]
    tensors = [[p] + [t for t in opt.state[p].values() if torch.is_tensor(t)] for p in params]
    return [[t.detach().clone() for t in ts] for ts in tensors], log, layout.groups


# LAMB: flat tiles (norms over each tensor); AdamP: row tiles and per-row sums
CASES = [("LAMB", [(33000,), (7000,), (5000,)]),
         ("AdamP", [(40, 300), (60, 50), (16, 64)])]


@pytest.mark.parametrize("name,shapes", CASES, ids=[c[0] for c in CASES])
def test_one_misaligned_view_gets_its_own_reduce_launch(name, shapes):
    cls = getattr(optforge, name)
    dense, dense_log, dense_groups = step_bucket(cls, shapes, None)
    ours, log, groups = step_bucket(cls, shapes, misaligned=1)
    # the dense bucket: every launch (one per stage and tile group) with the hint
    assert dense_log and all(align == 16 for _, align in dense_log)
    assert dense_groups == [(None, 16)]
    # the view's tiles alone without the hint; every other tile with it
    assert any(align == 1 for _, align in log)
    assert all(members == (1,) for members, align in log if align == 1)
    assert all(1 not in members for members, align in log if align == 16)
    assert {j for members, align in log if align == 16 for j in members} == {0, 2}
    assert groups == [((0, 2), 16), ((1,), 1)]  # the elementwise kernel likewise
    for j, (mine, theirs) in enumerate(zip(ours, dense)):
        for a, b in zip(mine, theirs):
            if INTERPRETED or j != 1:
                assert torch.equal(a, b), (name, j, tuple(a.shape))
            else:  # compiled, an unaligned tile may be laid out (and summed) otherwise
                assert norm_rel(a.cpu(), b.cpu()) < 1e-6, (name, j, tuple(a.shape))


def test_index_width_and_row_alignment_hints():
    """The other per-launch hints of reduce kernels: 32-bit offsets only while no lane of
    any tile (padding rows and columns included) reaches 2**31; COLS_DIV the largest of
    8, 4, 2, 1 dividing every row length of the launch."""
    from optforge.kernels.triton.reduce import cols_divisor, index32_fits
    assert index32_fits([(1000, 4096), (3, 7)], rows=4, cols=256)
    assert not index32_fits([(2**21, 1024)], rows=4, cols=256)  # 2**31 elements
    assert not index32_fits([(2**21 - 4, 1024)], rows=4, cols=256)  # padding reaches 2**31
    assert index32_fits([(2**21 - 5, 1024)], rows=4, cols=256)
    assert not index32_fits([(7, 13), (2**31, 1)], rows=1024, cols=1)  # one tensor decides
    assert cols_divisor([64, 1024]) == 8 and cols_divisor([64, 12]) == 4
    assert cols_divisor([6, 10]) == 2 and cols_divisor([7, 8]) == 1
