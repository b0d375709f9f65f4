"""Competitive gradient optimization for two-player zero-sum games (CATALOGUE.md, seed 002:40).

x minimizes f(x, y), y maximizes it. Each player plays the Nash equilibrium of the local
bilinear approximation of the game, regularised by its own step size (Schäfer &
Anandkumar (2019), "Competitive Gradient Descent", arXiv:1905.12103):

    dx = -lr_x (g_x + D_xy dy),      dy = lr_y (g_y + D_yx dx)

with g_x = grad_x f, g_y = grad_y f, D_xy = d^2 f / dx dy (D_yx = D_xy^T). Solving the
pair for dx and dy gives the equations implemented here:

    (I + lr_x lr_y D_xy D_yx) r_x = g_x + lr_y D_xy g_y,     x <- x - lr_x r_x
    (I + lr_x lr_y D_yx D_xy) r_y = g_y - lr_x D_yx g_x,     y <- y + lr_y r_y

(lr_x = lr_y = lr is Schäfer & Anandkumar's CGD.) Both matrices are I plus a Gram
matrix, symmetric positive definite, so conjugate gradient solves them; D_xy v and
D_yx u are mixed Hessian-vector products (double backward, never a matrix).

``OptimisticCGO`` feeds the same competitive directions r to the optimistic rule
(optforge.OptimisticGD): x <- x - lr_x (2 r_x,t - r_x,t-1), y <- y + lr_y (2 r_y,t -
r_y,t-1), r_0 = 0 -- optimism (the last direction as a hint, Daskalakis et al. 2018)
applied to the competitive direction, our reading of "optimistic CGO" (Vyas,
Bullins & Azizzadenesheli, ICML 2023, seed 002:40); see docs/multi-evaluation.md.
"""
from __future__ import annotations

import math

import torch

from ..catalogue.optimistic import OptimisticGD
from ..catalogue.sgd import SGD
from ..runtime.backends import check_backend_name
from ._closure import CompiledUpdate, call_closure, check_player_params, require_closure
from .hvp import conjugate_gradient, grad_with_graph, vjp


class CGO(torch.optim.Optimizer):
    """``CGO(x_params, y_params, lr=1e-2, lr_y=None, *, cg_max_iter=100, cg_tol=1e-10,
    backend="auto")``.

    ``step(closure)``: the closure returns f(x, y) with its graph (no ``backward()``).
    Param group 0 is the x player (minimizes), group 1 the y player (``maximize=True``);
    ``lr_y`` defaults to ``lr``. ``last_cg`` holds (iterations, residual) of both solves.
    """

    rule_cls = SGD

    def __init__(self, x_params, y_params, lr: float = 1e-2, lr_y: float | None = None, *,
                 cg_max_iter: int = 100, cg_tol: float = 1e-10, backend: str = "auto"):
        name = type(self).__name__
        x_params, y_params = list(x_params), list(y_params)
        check_player_params(name, {"x_params": x_params, "y_params": y_params})
        check_backend_name(backend)
        lr_y = lr if lr_y is None else lr_y
        for key, value in (("lr", lr), ("lr_y", lr_y), ("cg_tol", cg_tol)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: {key} = {value!r} must be a finite number >= 0")
        if isinstance(cg_max_iter, bool) or not isinstance(cg_max_iter, int) or cg_max_iter < 1:
            raise ValueError(f"{name}: cg_max_iter = {cg_max_iter!r} must be an int >= 1")
        self.cg_max_iter, self.cg_tol, self.backend = cg_max_iter, float(cg_tol), backend
        self._ready = False
        super().__init__([dict(params=x_params, lr=float(lr), maximize=False),
                          dict(params=y_params, lr=float(lr_y), maximize=True)],
                         dict(lr=float(lr), maximize=False))
        self._ready = True
        self._update = CompiledUpdate(self.rule_cls, self.param_groups, backend)
        self.last_cg = None

    def add_param_group(self, param_group: dict) -> None:
        if self._ready:
            raise TypeError(f"{type(self).__name__}: the two players are fixed at construction "
                            "(x_params, y_params); add_param_group is not supported")
        super().add_param_group(param_group)

    def _directions(self, loss):
        """r_x, r_y from the two CG solves (see the module docstring)."""
        xs, ys = self.param_groups[0]["params"], self.param_groups[1]["params"]
        lx, ly = self.param_groups[0]["lr"], self.param_groups[1]["lr"]
        g = grad_with_graph(type(self).__name__, loss, xs + ys)
        gx, gy = g[:len(xs)], g[len(xs):]
        d_xy = lambda v: vjp(gy, xs, v)   # D_xy v = d/dx <g_y, v>
        d_yx = lambda u: vjp(gx, ys, u)   # D_yx u = d/dy <g_x, u>
        gx0, gy0 = [t.detach() for t in gx], [t.detach() for t in gy]
        bx = [a + ly * b for a, b in zip(gx0, d_xy(gy0))]
        by = [a - lx * b for a, b in zip(gy0, d_yx(gx0))]
        sx = conjugate_gradient(lambda u: [a + lx * ly * b for a, b in zip(u, d_xy(d_yx(u)))],
                                bx, max_iter=self.cg_max_iter, tol=self.cg_tol)
        sy = conjugate_gradient(lambda v: [a + lx * ly * b for a, b in zip(v, d_yx(d_xy(v)))],
                                by, max_iter=self.cg_max_iter, tol=self.cg_tol)
        self.last_cg = ((sx.iterations, sx.residual), (sy.iterations, sy.residual))
        return dict(zip(xs + ys, sx.solution + sy.solution))

    def step(self, closure=None):
        """One simultaneous competitive step; returns f at the starting point."""
        name = type(self).__name__
        require_closure(name, closure, kind="graph")
        loss = call_closure(name, closure, graph=True)
        directions = self._directions(loss)
        # r_x with lr_x on the minimizing group, r_y with lr_y on the maximizing one
        self._update(self.param_groups, directions)
        return loss.detach()

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["rule"] = self._update.state_dict()
        sd["cg"] = dict(cg_max_iter=self.cg_max_iter, cg_tol=self.cg_tol)
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        rule, cg = state_dict.pop("rule", None), state_dict.pop("cg", None)
        if rule is None or cg is None:
            raise ValueError(f"{type(self).__name__}.load_state_dict: not a "
                             f"{type(self).__name__} state dict (no 'rule'/'cg' entries)")
        super().load_state_dict(state_dict)
        self._update.load_state_dict(rule)
        self.cg_max_iter, self.cg_tol = cg["cg_max_iter"], cg["cg_tol"]


class OptimisticCGO(CGO):
    """Optimistic CGO: the competitive directions through the optimistic rule
    (x <- x - lr_x (2 r_x,t - r_x,t-1), y <- y + lr_y (2 r_y,t - r_y,t-1), r_0 = 0).
    The previous directions are state (``prev_grad`` of the rule, in ``state_dict``)."""

    rule_cls = OptimisticGD
