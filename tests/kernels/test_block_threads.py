"""The reduce stages' own threads (kernels/numba/block_threads.py): every block runs once,
errors reach the caller, and the bits do not depend on the thread count."""
import threading

import numba
import pytest
import torch

import optforge
from optforge.kernels.numba import block_threads
from optforge.kernels.numba.block_threads import chunks, run_block_ranges


@pytest.mark.parametrize("n_blocks", [1, 2, 5, 16, 153, 1000])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_chunks_cover_every_block_once_in_order(n_blocks, threads):
    parts = chunks(n_blocks, threads)
    assert [b for lo, hi in parts for b in range(lo, hi)] == list(range(n_blocks))
    # two chunks per thread (fewer dispatches), none over CHUNK blocks (a late thread)
    size = min(block_threads.CHUNK, -(-n_blocks // (2 * threads)))
    assert all(hi - lo == size for lo, hi in parts[:-1]) and 0 < parts[-1][1] - parts[-1][0] <= size


def test_every_block_runs_once_on_several_threads():
    seen = []
    lock = threading.Lock()

    def kernel(b0, b1, out):
        with lock:
            seen.extend(range(b0, b1))
        out[b0:b1] = [1] * (b1 - b0)
    out = [0] * 40
    run_block_ranges(kernel, 40, (out,), threads=3)
    assert sorted(seen) == list(range(40)) and out == [1] * 40


def test_an_error_in_a_chunk_reaches_the_caller():
    def kernel(b0, b1):
        if b0 <= 7 < b1:
            raise ValueError("block 7")
    with pytest.raises(ValueError, match="block 7"):
        run_block_ranges(kernel, 20, (), threads=2)


def test_reduce_stages_give_the_same_bits_on_one_thread_and_several():
    """LAMB over 3M elements (46 blocks, norms in a reduce stage), one numba thread vs all."""
    def run():
        gen = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (2_000_000, 1_000_001)]
        opt = optforge.LAMB(ps, lr=1e-2, backend="numba")
        for _ in range(3):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return [p.detach().clone() for p in ps]
    threads = numba.get_num_threads()
    many = run()
    numba.set_num_threads(1)
    try:
        one = run()
    finally:
        numba.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, many))
