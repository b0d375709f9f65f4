"""L-BFGS (Liu & Nocedal, 1989; Nocedal & Wright, *Numerical Optimization*, Alg. 7.4 and
7.5), with torch.optim.LBFGS's constructor, step semantics and state, so that either
library's checkpoints load into the other and continue.

One ``step(closure)`` runs up to ``max_iter`` iterations of

    d = -H g                     two-loop recursion over the last ``history_size`` pairs
                                 s = x_{k+1} - x_k, y = g_{k+1} - g_k (pairs with
                                 <y, s> <= 1e-10 are skipped: they would break H > 0),
                                 H_0 = <s, y> / <y, y> I from the newest pair
    t = lr                       (first iteration ever: min(1, 1/||g||_1) lr)
        or a strong-Wolfe step   (``line_search_fn="strong_wolfe"``, see wolfe.py)
    x <- x + t d

and stops early when max|g| <= tolerance_grad, <g, d> > -tolerance_change, the step
max|t d| or the loss change falls below tolerance_change, or the closure has been called
``max_eval`` times. All parameters form one flat vector (one param group, as in torch).
The recursion is torch on flat vectors: it is a sequence of dot products and axpys over
the history, not an elementwise rule a kernel would fuse.

A step that raises (in the closure, or a NaN check of the caller's) leaves the parameters
at their starting point and the state as it was: the state is written once, at the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._closure import call_closure, require_closure
from .wolfe import strong_wolfe

LINE_SEARCHES = (None, "strong_wolfe")
CURVATURE_MIN = 1e-10   # <y, s> below this: the pair is not stored (torch's threshold)


class LBFGS(torch.optim.Optimizer):
    """``LBFGS(params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
    tolerance_change=1e-9, history_size=100, line_search_fn=None)``.

    ``step(closure)`` needs a backward closure (zero grads, loss, ``backward()``, return
    the loss) and returns the loss at the starting point, as torch.optim.LBFGS does.
    State (on the first parameter, torch's keys): ``func_evals``, ``n_iter``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``.
    """

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None):
        if isinstance(lr, torch.Tensor) and lr.numel() == 1:
            lr = float(lr)
        for name, value in (("lr", lr), ("tolerance_grad", tolerance_grad),
                            ("tolerance_change", tolerance_change)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"LBFGS: {name} = {value!r} must be a finite number >= 0")
        if max_eval is None:
            max_eval = max_iter * 5 // 4 if isinstance(max_iter, int) else max_iter
        for name, value in (("max_iter", max_iter), ("max_eval", max_eval),
                            ("history_size", history_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LBFGS: {name} = {value!r} must be an int >= 1")
        if line_search_fn not in LINE_SEARCHES:
            raise ValueError(f"LBFGS: line_search_fn = {line_search_fn!r}; expected None or "
                             "'strong_wolfe'")
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change,
                                      history_size=history_size, line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS: all parameters form one vector, so it takes one param "
                             f"group, got {len(self.param_groups)} (as torch.optim.LBFGS)")

    # ---- flat views of the parameters -----------------------------------------------
    @property
    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def _check_params(self) -> None:
        for i, p in enumerate(self._params):
            if p.is_complex():
                raise TypeError(f"LBFGS: parameter {i} is complex ({p.dtype}); view it as "
                                "real (torch.view_as_real) or split it into two parameters")
            if p.grad is not None and p.grad.is_sparse:
                raise RuntimeError(f"LBFGS: parameter {i} has a sparse gradient")

    def _flat_grad(self) -> torch.Tensor:
        # a parameter the loss does not touch has gradient 0, not "missing"
        return torch.cat([p.grad.reshape(-1) if p.grad is not None else
                          torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                          for p in self._params])

    def _flat_params(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params])

    @torch.no_grad()
    def _move(self, t: float, d: torch.Tensor) -> None:
        """x <- x + t d."""
        at = 0
        for p in self._params:
            p.add_(d[at:at + p.numel()].view_as(p), alpha=t)
            at += p.numel()

    @torch.no_grad()
    def _set(self, x: torch.Tensor) -> None:
        at = 0
        for p in self._params:
            p.copy_(x[at:at + p.numel()].view_as(p))
            at += p.numel()

    def _evaluate(self, closure) -> tuple[float, torch.Tensor]:
        loss = float(call_closure("LBFGS", closure))
        return loss, self._flat_grad()

    # ---- the step ---------------------------------------------------------------------
    def step(self, closure=None):
        require_closure("LBFGS", closure)
        self._check_params()
        x_start = self._flat_params()
        try:
            return self._step(closure)
        except BaseException:
            self._set(x_start)   # the state is only written on success
            raise

    def _step(self, closure):
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        state = self.state[self._params[0]]
        orig_loss = call_closure("LBFGS", closure)
        loss, g = float(orig_loss), self._flat_grad()
        if float(g.abs().max()) <= group["tolerance_grad"]:  # already stationary: no iteration
            state["func_evals"] = state.get("func_evals", 0) + 1
            return orig_loss
        memory = _Memory.load(state)
        evals, n_iter = 1, 0
        while n_iter < max_iter:
            n_iter += 1
            memory.n_total += 1
            memory.new_direction(g, group["history_size"])
            memory.prev_g, memory.prev_loss = g.clone(), loss
            memory.t = min(1.0, 1.0 / float(g.abs().sum())) * lr if memory.n_total == 1 else lr
            gtd = float(g.dot(memory.d))
            if gtd > -group["tolerance_change"]:  # not a descent direction (any more)
                break
            loss, g, ls_evals = self._line_search(closure, memory, loss, g, gtd,
                                                  last=n_iter == max_iter)
            evals += ls_evals
            memory.func_evals += ls_evals
            if n_iter == max_iter or evals >= max_eval or self._converged(memory, loss, g):
                break
        memory.func_evals += 1
        memory.save(state)
        return orig_loss

    def _line_search(self, closure, memory: "_Memory", loss: float, g, gtd: float,
                     last: bool):
        """Move along ``memory.d`` by ``memory.t`` (or the strong-Wolfe step, which sets
        ``memory.t``): (loss, gradient) at the new point and the closure calls made."""
        if self.param_groups[0]["line_search_fn"] == "strong_wolfe":
            x0 = self._flat_params()

            def at(step, x0=x0, d=memory.d):
                self._move(step, d)
                try:
                    return self._evaluate(closure)
                finally:
                    self._set(x0)
            loss, g, memory.t, evals = strong_wolfe(
                at, memory.t, memory.d, loss, g, gtd,
                tolerance_change=self.param_groups[0]["tolerance_change"])
            self._move(memory.t, memory.d)
            return loss, g, evals
        self._move(memory.t, memory.d)
        if last:  # the last iteration's point is not evaluated
            return loss, g, 0
        loss, g = self._evaluate(closure)
        return loss, g, 1

    def _converged(self, memory: "_Memory", loss: float, g) -> bool:
        """A stationary point, or a step or loss change below tolerance_change."""
        group = self.param_groups[0]
        if float(g.abs().max()) <= group["tolerance_grad"]:
            return True
        tol_change = group["tolerance_change"]
        return float(memory.d.abs().max()) * abs(memory.t) <= tol_change or \
            abs(loss - memory.prev_loss) < tol_change


@dataclass
class _Memory:
    """What L-BFGS carries between iterations and steps, under torch.optim.LBFGS's state
    names; loaded as copies, so a step that raises leaves the stored state as it was."""

    d: torch.Tensor | None
    t: float | None
    dirs: list
    stps: list
    ro: list
    h_diag: object
    prev_g: torch.Tensor | None
    prev_loss: float | None
    al: list | None
    n_total: int
    func_evals: int

    @classmethod
    def load(cls, state: dict) -> "_Memory":
        return cls(state.get("d"), state.get("t"), list(state.get("old_dirs", [])),
                   list(state.get("old_stps", [])), list(state.get("ro", [])),
                   state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss"),
                   state.get("al"), state.get("n_iter", 0), state.get("func_evals", 0))

    def save(self, state: dict) -> None:
        state.update(func_evals=self.func_evals, n_iter=self.n_total, d=self.d, t=self.t,
                     old_dirs=self.dirs, old_stps=self.stps, ro=self.ro, H_diag=self.h_diag,
                     prev_flat_grad=self.prev_g, prev_loss=self.prev_loss)
        if self.al is not None:
            state["al"] = self.al

    def new_direction(self, g: torch.Tensor, history_size: int) -> None:
        """``d`` at gradient ``g``: steepest descent on the first iteration ever, else the
        two-loop recursion after storing the last move's curvature pair (if positive)."""
        if self.n_total == 1:
            self.d, self.dirs, self.stps, self.ro, self.h_diag = g.neg(), [], [], [], 1
            return
        y, s = g - self.prev_g, self.d * self.t
        ys = y.dot(s)
        if ys > CURVATURE_MIN:
            if len(self.dirs) == history_size:
                self.dirs.pop(0), self.stps.pop(0), self.ro.pop(0)
            self.dirs.append(y), self.stps.append(s), self.ro.append(1.0 / ys)
            self.h_diag = ys / y.dot(y)  # scaling of H_0 (N&W eq. 7.20)
        self.d, self.al = two_loop(g, self.dirs, self.stps, self.ro, self.h_diag, history_size)


def two_loop(g, dirs, stps, ro, h_diag, history_size):
    """d = -H g by N&W Alg. 7.4: H is the L-BFGS inverse-Hessian approximation from the
    pairs (s_i = stps[i], y_i = dirs[i], ro_i = 1 / <y_i, s_i>) and H_0 = h_diag I.
    Returns d and the alphas of the first loop (kept in the state as torch does)."""
    alphas = [None] * history_size
    q = g.neg()
    for i in range(len(dirs) - 1, -1, -1):     # newest pair first
        alphas[i] = stps[i].dot(q) * ro[i]
        q.add_(dirs[i], alpha=-alphas[i])
    r = q * h_diag
    for i in range(len(dirs)):                 # oldest pair first
        beta = dirs[i].dot(r) * ro[i]
        r.add_(stps[i], alpha=alphas[i] - beta)
    return r, alphas
