"""Frank-Wolfe (conditional gradient) with the open-loop step gamma = 2 / (k + 2), k = 0, 1, ...
(Frank & Wolfe (1956); Jaggi (2013), ICML, "Revisiting Frank-Wolfe"; seed 002:136: Carderera,
Besancon & Pokutta (2021), NeurIPS, "Simple steps are all you need", O(1/t) primal and FW gap).

s = argmin_{s in C} <g, s> (the LMO);  p <- p + gamma (s - p), gamma = 2 / (t + 1) with
optforge's t = k + 1 (so the first step goes all the way to s). C is per tensor:
- FrankWolfeL1, ||s||_1 <= radius: -radius sign(g) on the argmax of |g|;
- FrankWolfeLinf, ||s||_inf <= radius: -radius sign(g);
- FrankWolfeLp, ||s||_p <= radius, 1 < p < inf (``ord``), Hoelder's equality case with
  q = p / (p - 1): -radius sign(g) |g|^(q-1) / ||g||_q^(q-1), computed from |g| / max|g|;
- FrankWolfeSimplex, s >= 0, sum(s) = radius: radius on the argmin of g.
Ties: the mass of a vertex is split equally over every coordinate attaining the max |g|
(min g): a convex combination of minimisers, so still an exact LMO. g = 0 gives s = 0
(the simplex: radius / n everywhere). ``gap()`` is the Frank-Wolfe gap <g, x - s>
= <g, x> + max_{s in C} <-g, s> summed over the tensors (call it after backward, before step).
"""
import torch

from ..dsl import Rule, abs, amax, grad, param, pow, sign, step, where
from ..dsl import sum as total
from ._base import CatalogueOptimizer


def _fw(s):
    return Rule(param() + 2 / (step() + 1) * (s - param()))


def _g(maximize):
    return -grad() if maximize else grad()


def frank_wolfe_l1(radius=1.0, maximize=False):
    g = _g(maximize)
    tie = where(abs(g) >= amax(abs(g)), 1, 0)
    return _fw(-radius * sign(g) * tie / total(tie))


def frank_wolfe_linf(radius=1.0, maximize=False):
    return _fw(-radius * sign(_g(maximize)))


def frank_wolfe_lp(radius=1.0, ord=2.0, maximize=False):  # noqa: A002 - torch's name
    g = _g(maximize)
    m = amax(abs(g))
    a = abs(g) / where(m > 0, m, 1)  # |g| / max|g| in [0, 1]: no overflow for p near 1
    s = -radius * sign(g) * pow(a, 1 / (ord - 1)) / pow(total(pow(a, ord / (ord - 1))), 1 / ord)
    return _fw(where(m > 0, s, 0))


def frank_wolfe_simplex(radius=1.0, maximize=False):
    g = _g(maximize)
    tie = where(-g >= amax(-g), 1, 0)
    return _fw(radius * tie / total(tie))


class _FrankWolfe(CatalogueOptimizer):
    @torch.no_grad()
    def gap(self) -> float:
        """The Frank-Wolfe gap max_{s in C} <g, x - s> at the current parameters and grads."""
        out = 0.0
        for group in self.param_groups:
            for x in (x for x in group["params"] if x.grad is not None):
                g = (-x.grad if group["maximize"] else x.grad).double()
                out += float((g * x.double()).sum()) + group["radius"] * self._support(g, group)
        return out


class FrankWolfeL1(_FrankWolfe):
    """Frank-Wolfe on the l1 ball: moves towards one signed vertex per step (sparse)."""
    rule, source = frank_wolfe_l1, "Jaggi (2013), ICML; open-loop step 2/(k+2)"
    _support = staticmethod(lambda g, group: float(g.abs().max()))


class FrankWolfeLinf(_FrankWolfe):
    """Frank-Wolfe on the l_inf ball (box): the LMO is -radius sign(g)."""
    rule, source = frank_wolfe_linf, "Jaggi (2013), ICML; open-loop step 2/(k+2)"
    _support = staticmethod(lambda g, group: float(g.abs().sum()))


class FrankWolfeLp(_FrankWolfe):
    """Frank-Wolfe on the l_p ball, 1 < p < inf: the LMO from Hoelder's equality case."""
    rule, source = frank_wolfe_lp, "Jaggi (2013), ICML; open-loop step 2/(k+2)"
    _support = staticmethod(lambda g, group: float(g.norm(group["ord"] / (group["ord"] - 1))))


class FrankWolfeSimplex(_FrankWolfe):
    """Frank-Wolfe on the scaled simplex {s >= 0, sum s = radius}."""
    rule, source = frank_wolfe_simplex, "Jaggi (2013), ICML; open-loop step 2/(k+2)"
    _support = staticmethod(lambda g, group: float(-g.min()))
