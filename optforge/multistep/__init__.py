"""Closure-driven optimizers: the runtime calls the closure several times per step.

- ArmijoLineSearch: backtracking around any optimizer (restores params and state exactly).
- Extragradient: extrapolate, re-evaluate, update from the saved point; two timescales.
- CGO / OptimisticCGO: competitive gradient steps for zero-sum games (mixed Hessian-vector
  products, conjugate gradient).
- NewtonCG: regularised / damped Newton with Hessian-vector products and CG.
- LBFGS: torch.optim.LBFGS's method and state (optional strong-Wolfe line search).
- SAM / ASAM: sharpness-aware steps around any optimizer (closure called twice).
- Lookahead: k fast steps of any optimizer, then a pull of the slow weights.
- ScheduleFreeAdamW / ScheduleFreeSGD: y/x/z iterates, optimizer.train()/eval() swap.

The elementwise update of Extragradient, CGO and NewtonCG runs through a compiled optforge
rule (SGD or OptimisticGD) on the chosen backend. Equations: docs/multi-evaluation.md.
"""
from .armijo import ArmijoLineSearch
from .competitive import CGO, OptimisticCGO
from .extragradient import Extragradient
from .lbfgs import LBFGS
from .lookahead import Lookahead
from .newton_cg import NewtonCG
from .sam import SAM
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

__all__ = ["ArmijoLineSearch", "Extragradient", "CGO", "OptimisticCGO", "NewtonCG", "LBFGS", "SAM", "Lookahead",
           "ScheduleFreeAdamW", "ScheduleFreeSGD"]
