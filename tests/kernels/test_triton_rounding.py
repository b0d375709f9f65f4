"""The triton backend's bfloat16 roundings: nearest-even matches torch bit for bit;
stochastic rounding is unbiased, seeded, and reachable per tensor in the launcher."""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

from optforge.catalogue import SGD
from optforge.kernels.triton.launcher import TritonLauncher
from optforge.kernels.triton.rounding import round_to_bf16
from optforge.runtime.compiled import compile_rule

EDGES = [0.0, -0.0, 1.0, -1.0, 1.00390625, 1.005859375, 1.0078125 + 2**-9, -1.00390625,
         1.0 + 2**-8 + 2**-23, 3.3895313892515355e38, 3.4028234663852886e38, 3.3961775e38,
         float("inf"), float("-inf"), 1e-40, -1e-40, 2.0**-133, 2.0**-126, 1.17e-38,
         65504.0, 0.1, -0.3, 7.0e-45]


def _bits(t):
    return t.view(torch.int16).cpu()


def test_nearest_even_matches_torch_on_edge_values():
    x = torch.tensor(EDGES, dtype=torch.float32, device=DEVICE)
    assert torch.equal(_bits(round_to_bf16(x)), _bits(x.cpu().to(torch.bfloat16)))


def test_nearest_even_matches_torch_on_random_bit_patterns():
    gen = torch.Generator().manual_seed(3)
    bits = torch.randint(-2**31, 2**31 - 1, (50000,), generator=gen, dtype=torch.int64)
    x = bits.to(torch.int32).view(torch.float32)
    x = x[~torch.isnan(x)]  # NaN payloads differ by convention; checked below
    ours = round_to_bf16(x.to(DEVICE))
    assert torch.equal(_bits(ours), _bits(x.to(torch.bfloat16)))


def test_nan_stays_nan():
    x = torch.tensor([float("nan"), -float("nan")], device=DEVICE)
    x = torch.cat([x, torch.tensor([0x7F800001, 0x7FFFFFFF], dtype=torch.int32,
                                   device=DEVICE).view(torch.float32)])
    for stochastic in (False, True):
        assert torch.isnan(round_to_bf16(x, stochastic).float()).all()


def test_stochastic_rounding_is_unbiased_and_seeded():
    # 1 + 2**-9 lies a quarter of the way from 1 to the next bfloat16 (1 + 2**-7)
    x = torch.full((200000,), 1.0 + 2**-9, device=DEVICE)
    r = round_to_bf16(x, stochastic=True, seed=11).float().cpu()
    assert set(r.unique().tolist()) == {1.0, 1.0 + 2**-7}
    gap = 2**-7
    sigma = gap * (0.25 * 0.75 / x.numel()) ** 0.5
    assert abs(r.mean().item() - (1.0 + 2**-9)) < 5 * sigma
    assert torch.equal(round_to_bf16(x, True, 11), round_to_bf16(x, True, 11))
    assert not torch.equal(round_to_bf16(x, True, 11), round_to_bf16(x, True, 12))
    # exact values are never moved, infinities stay infinite
    exact = torch.tensor([1.0, -2.5, float("inf"), -float("inf")], device=DEVICE)
    assert torch.equal(round_to_bf16(exact, True, 5).float(), exact)


def test_stochastic_parameter_update_in_the_launcher():
    """An SGD step smaller than half a bfloat16 ulp: nearest-even never moves the
    weights; stochastic rounding moves them by the right amount on average, and
    torch.manual_seed makes it reproducible."""
    compiled = compile_rule(SGD.rule, SGD.rule.default_variant)
    n, lr = 100000, 2.0**-10
    hyper = SGD.rule.hyper_values({**SGD.rule.defaults, "lr": lr})
    scalars = compiled.scalars(hyper, 1.0)

    def step(stochastic):
        launcher = TritonLauncher(compiled.plan, stochastic=stochastic)
        p = torch.ones(n, dtype=torch.bfloat16, device=DEVICE)
        g = torch.full((n,), -1.0, dtype=torch.bfloat16, device=DEVICE)  # +lr per step
        launcher([p], [g], [], scalars)
        return p.float().cpu()

    assert torch.equal(step(()), torch.ones(n))
    torch.manual_seed(0)
    a = step(("p",))
    torch.manual_seed(0)
    b = step(("p",))
    assert torch.equal(a, b)
    sigma = 2**-7 * (0.125 * 0.875 / n) ** 0.5
    assert abs(a.mean().item() - (1.0 + lr)) < 5 * sigma


def test_stochastic_needs_a_written_tensor():
    compiled = compile_rule(SGD.rule, SGD.rule.default_variant)
    with pytest.raises(Exception, match="'g'"):
        TritonLauncher(compiled.plan, stochastic=("g",))
