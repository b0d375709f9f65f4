"""Rprop — Riedmiller & Braun (1993), resilient backpropagation; torch.optim.Rprop semantics.

Each coordinate keeps its own step size: it grows by ``etas[1]`` while the gradient keeps
its sign, shrinks by ``etas[0]`` when the sign flips, and stays within ``step_sizes``. The
parameter moves by the step size against the gradient's sign. On a sign flip torch's
variant (Rprop without weight backtracking, "Rprop-") skips the move and stores a zero
gradient, so the next step neither grows nor shrinks that coordinate's step size.
"""
from ..dsl import Rule, clamp, grad, param, sign, state, where
from ._base import CatalogueOptimizer


def rprop(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False):
    p, g = param(), grad()
    g = -g if maximize else g
    etaminus, etaplus = etas
    step_min, step_max = step_sizes
    prev = state("prev")
    # torch compares sign(g * prev) (the float32 product, so an underflowing product counts
    # as 0 there and here alike)
    agree = g * prev
    factor = where(agree > 0, etaplus, where(agree < 0, etaminus, 1))
    # lr only seeds the step sizes (torch: state["step_size"] = full_like(grad, lr))
    step_size = clamp(state("step_size", init=lr) * factor, step_min, step_max)
    g = where(agree < 0, 0, g)
    return Rule(p - sign(g) * step_size, prev=g, step_size=step_size)


class Rprop(CatalogueOptimizer):
    """Sign-based steps with per-coordinate adaptive sizes (torch.optim.Rprop)."""

    rule = rprop
    source = "Riedmiller & Braun (1993), doi:10.1109/ICNN.1993.298623; torch.optim.Rprop"
