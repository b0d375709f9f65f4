"""What every closure-driven optimizer shares: calling the closure, checking what it returns,
saving and restoring parameters, and applying ``p <- p -/+ lr d`` through a compiled rule.

Two closure conventions exist, because the optimizers need different things:
- *backward closures* (Armijo, Extragradient) are torch's: zero the grads, compute the loss,
  call ``backward()``, return the loss. The optimizer reads ``p.grad``.
- *graph closures* (CGO, NewtonCG) return the loss with its autograd graph and do not call
  ``backward()``: the optimizer differentiates it itself with ``create_graph=True`` to get
  Hessian-vector products.
"""
from __future__ import annotations

import torch


def require_closure(owner: str, closure, kind: str = "backward") -> None:
    """A clear error when a multi-evaluation optimizer's ``step`` gets no closure."""
    if closure is None:
        how = ("a closure that zeroes the grads, computes the loss, calls loss.backward() "
               "and returns the loss" if kind == "backward" else
               "a closure that returns the loss with its graph (no backward(): the optimizer "
               "differentiates it twice)")
        raise TypeError(f"{owner}.step() needs {how}: it evaluates the loss more than once "
                        "per step")
    if not callable(closure):
        raise TypeError(f"{owner}.step(): closure must be callable, got {type(closure).__name__}")


def call_closure(owner: str, closure, *, graph: bool = False) -> torch.Tensor:
    """Run the closure with grad enabled and check it returned one real number."""
    with torch.enable_grad():
        loss = closure()
    if isinstance(loss, (int, float)) and not isinstance(loss, bool) and not graph:
        return torch.tensor(float(loss), dtype=torch.float64)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{owner}: the closure must return the loss as a scalar tensor, got "
                        f"{type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"{owner}: the closure must return a scalar loss, got a tensor of "
                         f"shape {tuple(loss.shape)} (reduce it, e.g. with .sum() or .mean())")
    if loss.is_complex():
        raise ValueError(f"{owner}: the closure returned a complex loss ({loss.dtype})")
    if graph and not loss.requires_grad:
        raise ValueError(f"{owner}: the closure's loss has no autograd graph (requires_grad is "
                         "False); return the loss without detaching it and without calling "
                         ".item(), and do not wrap it in torch.no_grad()")
    return loss.reshape(()) if graph else loss.detach().reshape(())


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@torch.no_grad()
def restore(params, saved) -> None:
    for p, s in zip(params, saved):
        p.copy_(s)


def check_player_params(owner: str, groups: dict[str, list]) -> None:
    """Named parameter lists must be disjoint tensors that require grad."""
    seen: dict[int, str] = {}
    for name, params in groups.items():
        if not params:
            raise ValueError(f"{owner}: {name} has no parameters")
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{owner}: {name}[{i}] is a {type(p).__name__}, not a tensor")
            if not p.requires_grad:
                raise ValueError(f"{owner}: {name}[{i}] does not require grad")
            if id(p) in seen:
                other = seen[id(p)]
                raise ValueError(f"{owner}: parameter {name}[{i}] (shape {tuple(p.shape)}) is "
                                 f"also in {other}; each parameter belongs to one player" if
                                 other != name else
                                 f"{owner}: parameter {name}[{i}] appears twice in {name}")
            seen[id(p)] = name


class CompiledUpdate:
    """``p <- p - lr d`` (``+`` on ``maximize`` groups) run by a compiled optforge rule.

    The direction enters the rule as ``p.grad`` for the duration of one call; the user's
    ``p.grad`` is put back afterwards. ``rule_cls`` is a catalogue optimizer whose update is
    elementwise in (p, grad): SGD (``p - lr d``) or OptimisticGD (``p - lr (2 d - d_prev)``,
    which keeps ``d_prev`` as state). Its kernel runs on the chosen backend, so the same
    wrapper runs on torch, numba or triton.
    """

    def __init__(self, rule_cls, groups: list[dict], backend: str):
        self.rule = rule_cls([dict(params=list(g["params"]), lr=float(g["lr"]),
                                   maximize=bool(g.get("maximize", False))) for g in groups],
                             backend=backend)

    @torch.no_grad()
    def __call__(self, groups: list[dict], directions: dict, lrs: list[float] | None = None):
        """Apply the update to every parameter in ``directions`` (a dict param -> tensor)."""
        kept = {}
        for k, (group, inner) in enumerate(zip(groups, self.rule.param_groups)):
            inner["lr"] = float(group["lr"] if lrs is None else lrs[k])
            inner["maximize"] = bool(group.get("maximize", False))  # may change between steps
            for p in inner["params"]:
                kept[p] = p.grad
                d = directions.get(p)
                p.grad = None if d is None else d.detach().to(p.dtype).contiguous()
        try:
            self.rule.step()
        finally:
            for p, g in kept.items():
                p.grad = g

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)
