"""FTRL (dual averaging) on l_p balls with time-varying regularisation (seed 000: Johnson,
Martinez-Rubio, Pike-Burke & Rebeschini (2025), NeurIPS, "On the necessity of adaptive
regularisation: optimal anytime online learning on l_p-balls", arXiv:2506.19752).

G <- G + g (state ``grad_sum``);  x_{t+1} = argmin_{||x|| <= radius} <G, x> + psi(x) / eta,
eta = lr (t + 1)^(-lr_power) (x_1 = argmin psi = 0: the initial parameter is not used).
- FTRLLpBall, 1 < p < inf (``ord``): psi = ||x||_p^p / p, the paper's separable regulariser
  of degree p. The unconstrained minimiser u = -sign(G) (eta |G|)^(1/(p-1)) keeps its
  direction whatever the ball's multiplier, so x = u min(1, radius / ||u||_p) (computed from
  |G| / max|G|). p = 2 is the Euclidean projection of -eta G (lazy projected OGD).
- FTRLLinfBall: psi = ||x||_2^2 / 2 on the l_inf ball: x = clamp(-eta G, -radius, radius).
The paper's anytime-optimal schedule switches from degree p to degree 2 near t = d; degree 2
on an l_p ball (2 < p < inf) needs a Euclidean projection with no closed form, so it is not
offered. ``maximize`` ascends. (FTRL-Proximal is ``optforge.FTRL``.)
"""
from ..dsl import Rule, abs, amax, clamp, grad, minimum, pow, sign, state, step, where
from ..dsl import sum as total
from ._base import CatalogueOptimizer


def _grad_sum(maximize):
    return state("grad_sum") + (-grad() if maximize else grad())


def ftrl_lp_ball(lr=0.1, radius=1.0, ord=2.0, lr_power=0.5, maximize=False):  # noqa: A002
    G, eta = _grad_sum(maximize), lr * (step() + 1) ** (-lr_power)
    m = amax(abs(G))
    a = abs(G) / where(m > 0, m, 1)
    n = pow(total(pow(a, ord / (ord - 1))), 1 / ord)  # || a^(1/(p-1)) ||_p, >= 1 if m > 0
    scale = minimum(pow(eta * m, 1 / (ord - 1)), radius / where(m > 0, n, 1))
    return Rule(where(m > 0, -sign(G) * pow(a, 1 / (ord - 1)) * scale, 0), grad_sum=G)


def ftrl_linf_ball(lr=0.1, radius=1.0, lr_power=0.5, maximize=False):
    G = _grad_sum(maximize)
    return Rule(clamp(-lr * (step() + 1) ** (-lr_power) * G, -radius, radius), grad_sum=G)


_SOURCE = "Johnson, Martinez-Rubio, Pike-Burke & Rebeschini (2025), NeurIPS, arXiv:2506.19752"


class FTRLLpBall(CatalogueOptimizer):
    """FTRL with the degree-p regulariser on the l_p ball (Euclidean projection for p = 2)."""
    rule, source = ftrl_lp_ball, _SOURCE


class FTRLLinfBall(CatalogueOptimizer):
    """FTRL with the Euclidean regulariser on the l_inf ball (clamped dual averaging)."""
    rule, source = ftrl_linf_ball, _SOURCE
