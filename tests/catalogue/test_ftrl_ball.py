"""FTRL on l_p balls vs plain-torch references from the FTRL definition

    G_t = g_1 + ... + g_t,   x_{t+1} = argmin_{||x|| <= radius} <G_t, x> + psi(x) / eta_{t+1},
    eta_t = lr t^(-lr_power)

- psi = ||x||_2^2 / 2 (p = 2, and the l_inf ball): the Euclidean projection of -eta G;
- psi = ||x||_p^p / p on the l_p ball: the reference solves the KKT conditions, x(mu) =
  -sign(G) (|G| / (1/eta + mu))^(1/(p-1)) with the multiplier mu >= 0 found by bisection
  in float64 so that ||x(mu)||_p = radius (mu = 0 if x(0) is inside) -- not the radial
  rescaling the rule uses.
"""
import pytest
import torch

from optforge.catalogue.ftrl_ball import FTRLLinfBall, FTRLLpBall
from tests.conftest import SHAPES, available_backends, norm_rel, run_side_by_side


def argmin_l2(G, eta, radius, ord):
    y = -eta * G
    n = y.norm()
    return y * min(1.0, radius / float(n)) if n > 0 else y


def argmin_linf(G, eta, radius, ord):
    return (-eta * G).clamp(-radius, radius)


def argmin_lp_kkt(G, eta, radius, ord):
    G = G.double()

    def x_of(mu):
        return -torch.sign(G) * (G.abs() / (1 / eta + mu)) ** (1 / (ord - 1))

    def excess(mu):
        return float(torch.linalg.vector_norm(x_of(mu), ord)) - radius

    if excess(0.0) <= 0:
        return x_of(0.0)
    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        hi *= 2
    while hi - lo > 1e-15 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return x_of(hi)


class RefFTRL(torch.optim.Optimizer):
    def __init__(self, params, argmin, lr=0.1, radius=1.0, ord=2.0, lr_power=0.5,
                 maximize=False):
        super().__init__(params, dict(lr=lr, radius=radius, ord=ord, lr_power=lr_power,
                                      maximize=maximize))
        self.argmin = argmin

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for x in group["params"]:
                st = self.state[x]
                if not st:
                    st.update(t=0, G=torch.zeros_like(x))
                st["t"] += 1
                st["G"] += -x.grad if group["maximize"] else x.grad
                eta = group["lr"] * (st["t"] + 1) ** (-group["lr_power"])
                x.copy_(self.argmin(st["G"], eta, group["radius"], group["ord"]).to(x.dtype))


# radius 3 with these gradients: the ball is active for some steps and shapes, not all
CASES = {"l2": (FTRLLpBall, argmin_l2, dict(radius=3.0)),
         "l2_inactive": (FTRLLpBall, argmin_l2, dict(radius=1e3, lr=0.05)),
         "l3": (FTRLLpBall, argmin_lp_kkt, dict(ord=3.0, radius=3.0, lr_power=2 / 3)),
         "l1.5_maximize": (FTRLLpBall, argmin_lp_kkt, dict(ord=1.5, radius=2.0, maximize=True)),
         "linf": (FTRLLinfBall, argmin_linf, dict(radius=0.5)),
         "linf_maximize": (FTRLLinfBall, argmin_linf, dict(radius=2.0, lr=1.0, lr_power=1.0,
                                                           maximize=True))}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_ftrl_definition(shape, case):
    cls, argmin, kw = CASES[case]
    ref_kw = dict(kw, ord=kw.get("ord", 2.0))
    for backend in available_backends() + ["auto"]:
        ours, ref, _, _ = run_side_by_side(lambda ps: cls(ps, backend=backend, **kw),
                                           lambda ps: RefFTRL(ps, argmin, **ref_kw), shape)
        assert norm_rel(ours, ref) < 1e-6, backend


@pytest.mark.parametrize("ord", [1.5, 2.0, 3.0, 6.0])
def test_iterates_stay_in_the_ball_and_zero_gradients_give_zero(ord):
    gen = torch.Generator().manual_seed(3)
    x = torch.nn.Parameter(torch.randn(500, generator=gen))
    opt = FTRLLpBall([x], lr=10.0, radius=2.0, ord=ord)
    x.grad = torch.zeros(500)
    opt.step()
    assert torch.equal(x.detach(), torch.zeros(500))  # FTRL's first point: argmin psi = 0
    for _ in range(10):
        x.grad = 100 * torch.randn(500, generator=gen)
        opt.step()
        assert float(torch.linalg.vector_norm(x.detach().double(), ord)) <= 2.0 * (1 + 1e-5)


def test_linear_losses_drive_the_iterate_to_the_best_point_of_the_ball():
    # a fixed linear loss <c, x>: FTRL converges to argmin over the ball, -radius c/||c|| (l2)
    c = torch.tensor([3.0, -4.0, 0.0])
    x = torch.nn.Parameter(torch.zeros(3))
    opt = FTRLLpBall([x], lr=1.0, radius=2.0)
    for _ in range(50):
        x.grad = c
        opt.step()
    assert torch.allclose(x.detach(), torch.tensor([-1.2, 1.6, 0.0]), atol=1e-6)
