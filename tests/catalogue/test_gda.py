"""Gradient descent-ascent needs no new rule: a param group per player, ``maximize=True``
on the ascending one and its own ``lr`` (two timescales, CATALOGUE.md seeds 002:40,184).

On f(x, y) = x^2/2 + x y - y^2/2 (strongly convex in x, strongly concave in y, saddle
at 0) simultaneous two-timescale GDA is a linear contraction, so it must reach the saddle.
"""
import torch

import optforge


def test_two_timescale_gda_with_maximize_groups_reaches_the_saddle():
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.Parameter(torch.randn(32, generator=gen))
    y = torch.nn.Parameter(torch.randn(32, generator=gen))
    opt = optforge.SGD([dict(params=[x], lr=0.05), dict(params=[y], lr=0.2, maximize=True)])
    x0, y0 = x.detach().clone(), y.detach().clone()
    for _ in range(400):
        opt.zero_grad()
        (0.5 * x * x + x * y - 0.5 * y * y).sum().backward()
        opt.step()
    # the same iteration written out: [x, y] <- M [x, y] with the step matrix of GDA
    lx, ly = 0.05, 0.2
    M = torch.tensor([[1 - lx, -lx], [ly, 1 - ly]], dtype=torch.float64)
    expected = torch.linalg.matrix_power(M, 400) @ torch.stack([x0, y0]).double()
    assert torch.allclose(torch.stack([x.detach(), y.detach()]).double(), expected, atol=1e-6)
    assert torch.cat([x, y]).abs().max() < 1e-4
