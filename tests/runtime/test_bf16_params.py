"""bfloat16 parameters without drift: a linear regression trained with bf16 weights
tracks the float32 run when updates are Kahan-compensated or stochastically rounded,
and stalls with plain round-to-nearest (updates below half a bf16 step vanish)."""
import pytest
import torch

import optforge

N, D, STEPS = 512, 32, 300


def _problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=gen)
    y = x @ (3 * torch.randn(D, generator=gen)) + 0.01 * torch.randn(N, generator=gen)
    return x, y


def _train(backend, dtype, **options):
    """AdamW from w = 1 for STEPS steps; gradients in float32 from the stored weights
    (what a bf16 model's backward sees), handed over in the parameter's dtype."""
    x, y = _problem()
    w = torch.ones(D, dtype=dtype)
    opt = optforge.AdamW([w], lr=1e-3, weight_decay=0.0, backend=backend, **options)
    for _ in range(STEPS):
        wf = w.detach().float().requires_grad_(True)
        ((x @ wf - y) ** 2).mean().backward()
        w.grad = wf.grad.to(dtype)
        opt.step()
    return w.float(), ((x @ w.float() - y) ** 2).mean().item()


@pytest.fixture(scope="module")
def fp32_run():
    return _train("torch", torch.float32)


@pytest.mark.parametrize("param_rounding,max_distance", [("kahan", 0.02), ("stochastic", 0.06)])
def test_compensated_or_stochastic_bf16_tracks_fp32(backend, fp32_run, param_rounding,
                                                     max_distance):
    w32, loss32 = fp32_run
    w, loss = _train(backend, torch.bfloat16, param_rounding=param_rounding)
    assert (w - w32).norm() / w32.norm() < max_distance
    assert abs(loss - loss32) / loss32 < 0.01


def test_round_to_nearest_bf16_stalls(backend, fp32_run):
    w32, loss32 = fp32_run
    x, y = _problem()
    start = ((x @ torch.ones(D) - y) ** 2).mean().item()
    w, loss = _train(backend, torch.bfloat16)
    # every update is below half a bf16 step of w: nothing ever moves
    assert loss == start and loss32 < 0.9 * start
    assert (w - w32).norm() / w32.norm() > 0.2
