"""Backtracking (Armijo) line search around any optimizer (CATALOGUE.md, seeds 004:134,176).

Armijo (1966), "Minimization of functions having Lipschitz continuous first partial
derivatives"; Nocedal & Wright, *Numerical Optimization*, Sec. 3.1. The inner optimizer
proposes a step; the wrapper accepts it only if the loss decreased enough:

    f(x_k) <= f(x) + c <g, x_k - x>,    x_k = inner step from x with lr_k = lr shrink^k,

k = 0, 1, ..., max_trials - 1. The bound is written with the actual displacement x_k - x,
not -lr g, so it holds for any inner rule (Adam, momentum, sign methods): it is the
Armijo condition along the direction the inner rule chose. The first trial that satisfies
it is kept. A rejected trial is undone exactly: parameters, the inner optimizer's state
(moments, ``step`` counters: deep copies restored bit for bit) and its param-group
entries. If every trial fails, the step is a no-op and ``failures`` counts it.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ._closure import call_closure, require_closure, restore, snapshot


def _copy(value):
    """A deep copy of an optimizer-state value (tensors cloned, containers rebuilt)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


class ArmijoLineSearch(torch.optim.Optimizer):
    """``ArmijoLineSearch(inner, *, c=1e-4, shrink=0.5, max_trials=10)``.

    ``inner`` is any ``torch.optim.Optimizer`` whose param groups have an ``lr`` (an
    optforge optimizer or a torch one). Its param groups *are* the wrapper's, so an
    lr scheduler attached to either sees the same ``lr``. ``step(closure)`` needs a
    backward closure (zero grads, loss, ``backward()``, return loss).

    Counters (in ``state_dict``): ``steps`` (calls), ``failures`` (steps where every
    trial was rejected), ``trials`` (closure evaluations at trial points), and
    ``last_scale`` (shrink^k of the last accepted trial, 0.0 after a failure).
    """

    def __init__(self, inner, *, c: float = 1e-4, shrink: float = 0.5, max_trials: int = 10):
        if not isinstance(inner, torch.optim.Optimizer):
            raise TypeError(f"ArmijoLineSearch: inner must be a torch.optim.Optimizer "
                            f"(e.g. optforge.Adam or torch.optim.SGD), got {type(inner).__name__}")
        for i, group in enumerate(inner.param_groups):
            if "lr" not in group:
                raise ValueError(f"ArmijoLineSearch: param group {i} of {type(inner).__name__} "
                                 "has no 'lr' to backtrack on")
        if not 0.0 < float(c) < 1.0:
            raise ValueError(f"ArmijoLineSearch: c = {c!r} must lie in (0, 1)")
        if not 0.0 < float(shrink) < 1.0:
            raise ValueError(f"ArmijoLineSearch: shrink = {shrink!r} must lie in (0, 1)")
        if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
            raise ValueError(f"ArmijoLineSearch: max_trials = {max_trials!r} must be an int >= 1")
        self.inner = inner
        self.c, self.shrink, self.max_trials = float(c), float(shrink), max_trials
        self.counters = dict(steps=0, failures=0, trials=0, last_scale=0.0)
        self.defaults = dict(inner.defaults, c=self.c, shrink=self.shrink, max_trials=max_trials)
        # torch.optim.Optimizer.__init__ would build param groups of its own; the wrapper's
        # are the inner optimizer's, so only the hook tables it expects are set up here.
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                     "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                     "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    # The inner optimizer owns groups and state (load_state_dict replaces its lists).
    @property
    def param_groups(self):
        return self.inner.param_groups

    @property
    def state(self):
        return self.inner.state

    @property
    def failures(self) -> int:
        return self.counters["failures"]

    def add_param_group(self, param_group: dict) -> None:
        self.inner.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    # ---- saving and restoring the inner optimizer ------------------------------------
    def _save_inner(self):
        state = {p: _copy(s) for p, s in self.inner.state.items()}
        groups = [{k: _copy(v) for k, v in g.items() if k != "params"}
                  for g in self.inner.param_groups]
        return state, groups

    @torch.no_grad()
    def _restore_inner(self, saved) -> None:
        state, groups = saved
        for p in list(self.inner.state):
            if p not in state:           # created by the rejected trial
                del self.inner.state[p]
        for p, s in state.items():
            live = self.inner.state[p]
            for k in list(live):
                if k not in s:
                    del live[k]
            for k, v in s.items():
                cur = live.get(k)
                if (isinstance(v, torch.Tensor) and isinstance(cur, torch.Tensor)
                        and cur.shape == v.shape and cur.dtype == v.dtype):
                    cur.copy_(v)         # in place: references users hold stay valid
                else:
                    live[k] = _copy(v)
        for g, s in zip(self.inner.param_groups, groups):
            for k in [k for k in g if k != "params" and k not in s]:
                del g[k]
            g.update({k: _copy(v) for k, v in s.items()})

    # ---- the step ----------------------------------------------------------------------
    def step(self, closure=None):
        """One line-searched step; returns the loss at the starting point."""
        require_closure("ArmijoLineSearch", closure)
        loss0 = call_closure("ArmijoLineSearch", closure)
        f0 = float(loss0)
        params = [p for g in self.inner.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            raise RuntimeError("ArmijoLineSearch: no parameter has a gradient after the "
                               "closure ran; did it call loss.backward()?")
        x0 = snapshot(params)
        g0 = [p.grad.detach().clone() for p in params]
        saved = self._save_inner()
        lrs = [g["lr"] for g in self.inner.param_groups]
        self.counters["steps"] += 1
        scale = 1.0
        for _ in range(self.max_trials):
            for g, lr in zip(self.inner.param_groups, lrs):
                g["lr"] = lr * scale
            try:
                self.inner.step()
            finally:
                for g, lr in zip(self.inner.param_groups, lrs):
                    g["lr"] = lr
            # <g, x_k - x> in float64: the bound must not be decided by rounding
            slope = sum(float((gi.double() * (p.detach().double() - xi.double())).sum())
                        for gi, p, xi in zip(g0, params, x0))
            self.counters["trials"] += 1
            f_trial = float(call_closure("ArmijoLineSearch", closure))
            if f_trial <= f0 + self.c * slope:   # NaN compares False: rejected
                self.counters["last_scale"] = scale
                return loss0
            restore(params, x0)
            for p, gi in zip(params, g0):
                p.grad = gi.clone()
            self._restore_inner(saved)
            scale *= self.shrink
        self.counters["failures"] += 1
        self.counters["last_scale"] = 0.0
        return loss0

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(),
                "line_search": dict(self.counters, c=self.c, shrink=self.shrink,
                                    max_trials=self.max_trials)}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"inner", "line_search"}:
            raise ValueError("ArmijoLineSearch.load_state_dict: expected a dict with keys "
                             f"'inner' and 'line_search', got {sorted(state_dict)}")
        self.inner.load_state_dict(state_dict["inner"])
        saved = state_dict["line_search"]
        self.counters = {k: saved[k] for k in self.counters}
        self.c, self.shrink, self.max_trials = saved["c"], saved["shrink"], saved["max_trials"]

    def __repr__(self) -> str:
        return (f"ArmijoLineSearch(c={self.c}, shrink={self.shrink}, "
                f"max_trials={self.max_trials}, inner={self.inner!r})")
