"""Regularised / damped Newton with Hessian-vector products and a conjugate-gradient inner
loop (CATALOGUE.md "Regularised / damped Newton", seeds 001, 004:134,154).

Each step, with g = grad f(x) and H = grad^2 f(x) (never formed: H v is a double backward):

    solve (H + reg I) d = g        by CG from d = 0, at most ``cg_max_iter`` products,
                                   until ||g - (H + reg I) d|| <= cg_tol ||g||
    delta = sqrt(<g, d>)           the Newton decrement (in the regularised metric)
    x <- x - lr eta d              through the compiled SGD rule on the chosen backend

Step-size schedules eta:
- "damped":   eta = 1 / (1 + delta), the damped Newton step of Nesterov & Nemirovskii for
              self-concordant functions (Nesterov, *Lectures on Convex Optimization*, 2018,
              Sec. 5.1.5): global convergence, and eta -> 1 (quadratic convergence) near the
              minimum.
- "constant": eta = 1 (with ``lr`` < 1: a fixed fraction of the Newton step).
- "aicn":     eta = (sqrt(1 + 2 L delta) - 1) / (L delta), the affine-invariant cubic Newton
              step size of Hanzely et al. (2022), arXiv:2211.00140 (the authors of seed
              004:134), with ``l_semi`` = L, a semi-strong self-concordance constant.
- a callable ``schedule(step, delta) -> eta``.

``reg`` > 0 is the Levenberg-style regularisation of seed 001 (regularised Newton): it keeps
H + reg I positive definite where H is not. If CG meets a direction of non-positive
curvature it stops there; if that happens on the first CG iteration (no progress yet) the
step falls back to the gradient, d = g.
"""
from __future__ import annotations

import math

import torch

from ..catalogue.sgd import SGD
from ..runtime.backends import check_backend_name
from ._closure import CompiledUpdate, call_closure, require_closure
from .hvp import conjugate_gradient, dot, grad_with_graph, vjp

SCHEDULES = ("damped", "constant", "aicn")


class NewtonCG(torch.optim.Optimizer):
    """``NewtonCG(params, lr=1.0, reg=0.0, *, schedule="damped", l_semi=1.0,
    cg_max_iter=50, cg_tol=1e-10, backend="auto")``.

    ``step(closure)``: the closure returns the loss with its graph (no ``backward()``).
    All parameters form one Newton system (the Hessian couples them); ``lr`` and ``reg``
    may differ per param group. ``stats`` holds the last step's decrement, eta, CG
    iterations and residual; ``stats["steps"]`` counts steps (kept in ``state_dict``).
    """

    def __init__(self, params, lr: float = 1.0, reg: float = 0.0, *, schedule="damped",
                 l_semi: float = 1.0, cg_max_iter: int = 50, cg_tol: float = 1e-10,
                 backend: str = "auto"):
        check_backend_name(backend)
        if not callable(schedule) and schedule not in SCHEDULES:
            raise ValueError(f"NewtonCG: schedule = {schedule!r}; expected one of {SCHEDULES} "
                             "or a callable (step, decrement) -> step size")
        for key, value in (("l_semi", l_semi), ("cg_tol", cg_tol)):
            self._check_number(key, value, "the constructor")
        if schedule == "aicn" and not l_semi > 0:
            raise ValueError("NewtonCG: schedule 'aicn' needs l_semi > 0")
        if isinstance(cg_max_iter, bool) or not isinstance(cg_max_iter, int) or cg_max_iter < 1:
            raise ValueError(f"NewtonCG: cg_max_iter = {cg_max_iter!r} must be an int >= 1")
        for key, value in (("lr", lr), ("reg", reg)):
            self._check_number(key, value, "the constructor")
        self.schedule, self.l_semi = schedule, float(l_semi)
        self.cg_max_iter, self.cg_tol, self.backend = cg_max_iter, float(cg_tol), backend
        super().__init__(params, dict(lr=lr, reg=reg))
        self._update = None
        self.stats = dict(steps=0, decrement=None, eta=None, cg_iterations=None,
                          cg_residual=None, negative_curvature=False)

    @staticmethod
    def _check_number(key, value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"NewtonCG: {key} = {value!r} in {where} must be a finite number "
                             ">= 0")

    def add_param_group(self, param_group: dict) -> None:
        where = f"param group {len(self.param_groups)}"
        unknown = sorted(set(param_group) - {"params", "lr", "reg"})
        if unknown:
            raise TypeError(f"NewtonCG: unknown key(s) {unknown} in {where}; known: "
                            "['lr', 'reg']")
        for key in ("lr", "reg"):
            if key in param_group:
                self._check_number(key, param_group[key], where)
        super().add_param_group(param_group)
        self._update = None

    def _eta(self, delta: float) -> float:
        if callable(self.schedule):
            return float(self.schedule(self.stats["steps"], delta))
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "damped":
            return 1.0 / (1.0 + delta)
        z = self.l_semi * delta           # aicn, rationalised: no cancellation as z -> 0
        return 1.0 if z == 0 else 2.0 / (math.sqrt(1.0 + 2.0 * z) + 1.0)

    def step(self, closure=None):
        """One Newton-CG step; returns the loss at the starting point."""
        require_closure("NewtonCG", closure, kind="graph")
        if self._update is None:
            self._update = CompiledUpdate(SGD, self.param_groups, self.backend)
        loss = call_closure("NewtonCG", closure, graph=True)
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            if not p.requires_grad:
                raise ValueError(f"NewtonCG: parameter {i} (shape {tuple(p.shape)}) does not "
                                 "require grad; the Newton system needs every parameter's "
                                 "gradient (freeze it by leaving it out of the optimizer)")
        regs = [g["reg"] for g in self.param_groups for _ in g["params"]]
        grads = grad_with_graph("NewtonCG", loss, params)
        b = [t.detach() for t in grads]

        def apply(v):  # (H + reg I) v
            return [hv + r * vi for hv, vi, r in zip(vjp(grads, params, v), v, regs)]

        res = conjugate_gradient(apply, b, max_iter=self.cg_max_iter, tol=self.cg_tol)
        d = res.solution
        if res.negative_curvature and res.iterations == 0:
            d = [t.clone() for t in b]    # no curvature information along g: a gradient step
        delta = math.sqrt(max(float(dot(b, d)), 0.0))
        eta = self._eta(delta)
        self._update(self.param_groups, dict(zip(params, d)),
                     lrs=[g["lr"] * eta for g in self.param_groups])
        self.stats.update(steps=self.stats["steps"] + 1, decrement=delta, eta=eta,
                          cg_iterations=res.iterations, cg_residual=res.residual,
                          negative_curvature=res.negative_curvature)
        return loss.detach()

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["newton"] = dict(self.stats)
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        stats = state_dict.pop("newton", None)
        if stats is None:
            raise ValueError("NewtonCG.load_state_dict: not a NewtonCG state dict (no 'newton' "
                             "entry)")
        super().load_state_dict(state_dict)
        self.stats = dict(stats)
        self._update = None
