"""The one counter-based generator of stochastic rounding, spelled three times (numba,
torch integer ops, triton's tl.philox): Random123's known answers, bit equality across
the backends, and unbiased rounding measured over many draws."""
import numpy as np
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

from optforge.kernels import philox_torch
from optforge.kernels.numba import philox as philox_numba
from optforge.kernels.triton.rounding import round_to_bf16

# Random123's kat_vectors for philox4x32-10: (counter, key, expected output)
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox_numba.philox4x32(*counter, *key)) == expected
    words = philox_torch.philox4x32(*[torch.tensor([c]) for c in counter], *key)
    assert tuple(int(w) for w in words) == expected


def _numba_bits(x, seed, tid=0, step=0, salt=0):
    bits = philox_numba.bf16_stochastic_bits(x.numpy().ravel(), seed, tid, step, salt)
    return torch.from_numpy(bits.view(np.int16)).reshape(x.shape)


def _torch_bits(x, seed, tid=0, step=0, salt=0):
    return philox_torch.bf16_stochastic(x, seed, tid, step, salt).view(torch.int16)


@pytest.mark.parametrize("tid,step,salt", [(0, 0, 0), (3, 17, 2), (2**20, 2**24 - 1, 5)])
def test_numba_and_torch_draw_the_same_noise(tid, step, salt):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10_003, generator=gen)  # not a multiple of 4: the last counter's tail
    for seed in (0, 12345, 2**24 - 1):
        assert torch.equal(_numba_bits(x, seed, tid, step, salt),
                           _torch_bits(x, seed, tid, step, salt))
    # the stream moves with every coordinate of the key and counter
    assert not torch.equal(_torch_bits(x, 7, tid, step, salt),
                           _torch_bits(x, 7, tid + 1, step, salt))
    assert not torch.equal(_torch_bits(x, 7, tid, step, salt),
                           _torch_bits(x, 7, tid, step + 1, salt))
    assert not torch.equal(_torch_bits(x, 7, tid, step, salt),
                           _torch_bits(x, 7, tid, step, salt + 1))


def test_triton_draws_the_same_noise():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3 * 4096 + 5, generator=gen)  # several programs and a masked tail
    for seed in (0, 99, 2**24 - 1):
        ours = round_to_bf16(x.to(DEVICE), stochastic=True, seed=seed).view(torch.int16)
        assert torch.equal(ours.cpu(), _torch_bits(x, seed))


def _offsets():
    """Values 0.3125 and 0.75 of a bfloat16 step above a bfloat16 number (and negative):
    round-to-nearest is off by -0.3125 and +0.25 steps there."""
    ulp = 2.0**-7  # the bfloat16 step in [1, 2)
    return torch.tensor([1 + 0.3125 * ulp, -(1 + 0.3125 * ulp), 1.5 + 0.75 * ulp]), ulp


@pytest.mark.parametrize("backend", ["torch", "numba", "triton"])
def test_stochastic_rounding_is_unbiased(backend):
    values, ulp = _offsets()
    n = 1 << 16  # draws per value: the mean's standard error is below 0.5 / 256 steps
    x = values.repeat_interleave(n)
    if backend == "torch":
        rounded = philox_torch.bf16_stochastic(x, 4321, 0, 0, 0)
    elif backend == "numba":
        rounded = _numba_bits(x, 4321).view(torch.bfloat16)
    else:
        rounded = round_to_bf16(x.to(DEVICE), stochastic=True, seed=4321).cpu()
    errors = (rounded.double() - x.double()).reshape(3, n) / ulp
    assert errors.mean(dim=1).abs().max() < 0.01  # unbiased within 5 standard errors
    nearest = (x.to(torch.bfloat16).double() - x.double()).reshape(3, n) / ulp
    assert nearest.mean(dim=1).abs().min() > 0.2  # the same measurement sees RNE's bias
    # each value rounds up with the probability of its offset: 0.3125, 0.3125, 0.75
    up = (rounded.double().abs() > x.double().abs()).reshape(3, n).double().mean(dim=1)
    assert torch.allclose(up, torch.tensor([0.3125, 0.3125, 0.75], dtype=torch.float64),
                          atol=0.01)


def test_specials_survive_stochastic_rounding():
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 0.0, -0.0,
                      3.3895313892515355e38])  # the largest finite bfloat16
    for rounded in (philox_torch.bf16_stochastic(x, 5, 0, 0, 0),
                    _numba_bits(x, 5).view(torch.bfloat16)):
        assert rounded[0] == float("inf") and rounded[1] == -float("inf")
        assert torch.isnan(rounded[2])
        assert torch.equal(rounded[3:5].view(torch.int16), x[3:5].bfloat16().view(torch.int16))
        assert rounded[5] == x[5]  # representable: never moved


@pytest.mark.parametrize("first,count", [(0, 1), (1, 6), (3, 4097), (2**33 + 2, 9)])
def test_block_noise_matches_the_per_element_stream(first, count):
    # a kernel's block may start anywhere (row segments, blocks past 2**32 elements)
    buf = np.zeros(count + 8, dtype=np.uint32)
    philox_numba.fill_noise16(buf, first, count, 777, 3, 12, 2)
    expected = [philox_numba.noise16(777, 3, first + i, 12, 2) for i in range(count)]
    assert list(buf[(first & 3):(first & 3) + count]) == expected


def _numba_f16(x, seed):
    noise = np.empty(x.numel() + 8, dtype=np.uint32)
    philox_numba.fill_noise16(noise, 0, x.numel(), seed, 0, 0, 0)
    bits = [philox_numba.f32_to_f16_sr(v, noise[i]) for i, v in enumerate(x.numpy())]
    return torch.tensor(np.array(bits, dtype=np.uint16).view(np.int16))


def test_float16_rounding_agrees_across_numba_and_torch():
    gen = torch.Generator().manual_seed(3)
    patterns = torch.randint(-2**31, 2**31 - 1, (20000,), generator=gen).to(torch.int32)
    x = torch.cat([patterns.view(torch.float32), torch.randn(5000, generator=gen) * 1e-6,
                   torch.randn(5000, generator=gen) * 1e4,
                   torch.tensor([65504.0, 65519.0, 65520.0, 65535.0, 65536.0, 6e-8, 3e-8,
                                 1e-9, 0.0, -0.0, float("inf"), -float("inf")])])
    ours = philox_torch.f16_stochastic(x, 77, 0, 0, 0)
    nan = torch.isnan(x)
    assert torch.equal(ours.view(torch.int16)[~nan], _numba_f16(x, 77)[~nan])
    assert torch.isnan(ours[nan]).all()
    exact = torch.randn(5000, generator=gen).half().float()  # representable: never moved
    assert torch.equal(philox_torch.f16_stochastic(exact, 5, 0, 0, 0).float(), exact)


@pytest.mark.parametrize("value,step", [(1 + 0.3 * 2**-10, 2**-10),  # a normal
                                        (3 * 2**-24 + 0.3 * 2**-24, 2**-24),  # a subnormal
                                        (65504 + 0.5 * 32, 32.0)])  # inf with p = 0.5
def test_float16_stochastic_rounding_is_unbiased(value, step):
    x = torch.full((1 << 16,), value)
    rounded = philox_torch.f16_stochastic(x, 1, 0, 0, 0).double()
    if value > 65504:  # the carry past the largest finite value: inf half the time
        assert abs(torch.isinf(rounded).double().mean().item() - 0.5) < 0.01
        return
    assert abs(((rounded - x.double()) / step).mean().item()) < 0.01
    assert abs(((x.half().double() - x.double()) / step).mean().item()) > 0.2
