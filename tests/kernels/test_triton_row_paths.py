"""Row results in the triton elementwise kernel (AdamP, SGDP: per-row projections; a
rule with row and column values).

The full-block path has three cases (compiler/printers/triton_reduce.py): the block
inside one row (row results loaded once), the block across one row end (the two rows'
results loaded once, a select per element) and rows shorter than a block (a 32-bit
division per element); the masked tail gathers per element. Every case must give the
bits of every other: a bucket stepped with blocks that hit all three cases equals,
bit for bit, the same bucket stepped with one block per tensor (all masked), and both
match the torch backend. Which case a block takes is computed here from the block map
(the interpreter cannot show a branch), so the test knows all of them ran.
"""
import math

import pytest
import torch

from tests.triton_env import DEVICE, INTERPRETED  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.kernels.triton.configs import Config
from optforge.runtime.compiled import compile_rule
from tests.conftest import norm_rel
from tests.kernels.test_triton_reduce import row_col

# with BLOCK blocks, (2, 6000): one-row and across-a-row-end blocks; (300, 20): short
# rows; small and 1-D tensors: masked blocks only (a 1-D tensor's rows have length 1)
SHAPES = [(2, 6000), (300, 20), (7, 13), (33,)]
BLOCK = 4096
TOL = 1e-6  # reductions accumulate in another order than torch's: a few ulps
DELTA = 0.1  # AdamP/SGDP's default


def orthogonal_grads(params, gen):
    """Gradients orthogonal to each row of p: |cos(g, p)| per row ~1e-7, far below
    delta / sqrt(row length), so the per-row projection (the row results) applies."""
    out = []
    for p in params:
        g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.dim() > 1:
            p64 = p.detach().double().cpu().reshape(p.shape[0], -1)
            g2 = g.reshape(p.shape[0], -1)
            g2 -= p64 * ((g2 * p64).sum(1, keepdim=True) / (p64 * p64).sum(1, keepdim=True))
            cos = (g2 * p64).sum(1).abs() / (g2.norm(dim=1) * p64.norm(dim=1))
            assert float(cos.max()) < DELTA / math.sqrt(g2.shape[1]) / 100
        out.append(g.float())
    return out


MAKERS = {"AdamP": lambda ps, backend: optforge.AdamP(ps, lr=0.1, backend=backend),
          "SGDP": lambda ps, backend: optforge.SGDP(ps, lr=0.1, backend=backend),
          "row_col": lambda ps, backend: optforge.Optimizer(ps, row_col, backend=backend)}


def run(name, backend, block=BLOCK, steps=3):
    """``steps`` of MAKERS[name] over SHAPES on ``backend``; ``block``: the triton elementwise
    kernel's BLOCK_SIZE (set in the launcher's config cache: reduce tiles keep their
    own size). Returns (params, states, the triton launcher or None)."""
    gen = torch.Generator().manual_seed(0)
    device = DEVICE if backend == "triton" else torch.device("cpu")
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in SHAPES]
    opt = MAKERS[name](params, backend)
    launcher = None
    if backend == "triton":
        compiled = compile_rule(opt.spec, opt.spec.variant_of(opt.param_groups[0]))
        launcher = opt.launcher_for(compiled, device, torch.float32).inner
        key = (launcher.kernel(torch.float32).digest, device,
               tuple(math.prod(s) for s in SHAPES))
        launcher._configs[key] = Config(block, 4)
    for _ in range(steps):
        for p, g in zip(params, orthogonal_grads(params, gen)):
            p.grad = g.to(device)
        opt.step()
    states = [t for p in params for t in opt.state[p].values() if torch.is_tensor(t)]
    return params, states, launcher


def block_cases(block: int) -> set[str]:
    """Which path each block of SHAPES takes with ``block`` elements per block."""
    cases = set()
    for shape in SHAPES:
        numel = math.prod(shape)
        n_cols = numel // shape[0]
        for start in range(0, numel, block):
            col0 = start % n_cols
            if start + block > numel:
                cases.add("masked")
            elif col0 + block <= n_cols:
                cases.add("one row")
            elif n_cols >= block:
                cases.add("across a row end")
            else:
                cases.add("short rows")
    return cases


@pytest.mark.parametrize("name", list(MAKERS))
def test_every_row_path_gives_the_same_bits(name):
    ours, our_states, launcher = run(name, "triton")
    numels = tuple(math.prod(s) for s in SHAPES)
    assert launcher.config_for(torch.float32, ours[0].device, numels).block_size == BLOCK
    assert block_cases(BLOCK) == {"one row", "across a row end", "short rows", "masked"}
    # one block per tensor: every element through the masked path
    whole = 1 << (max(numels) - 1).bit_length()
    if not INTERPRETED:
        pytest.skip(f"a block of {whole} elements per program is for the interpreter only")
    masked, masked_states, other = run(name, "triton", block=whole)
    assert other.config_for(torch.float32, ours[0].device, numels).block_size == whole
    assert block_cases(whole) == {"masked"}
    for a, b in zip(ours + our_states, masked + masked_states):
        assert torch.equal(a.detach(), b.detach()), (name, tuple(a.shape))


@pytest.mark.parametrize("name", list(MAKERS))
def test_row_paths_match_the_torch_backend(name):
    ours, _, _ = run(name, "triton")
    ref, _, _ = run(name, "torch")
    for a, b in zip(ours, ref):
        assert norm_rel(a.detach().cpu(), b.detach()) < TOL, (name, tuple(b.shape))
