"""Built-in input providers: tensors the runtime computes for ``given(name)`` each step.

Registered on import (``optforge.runtime.inputs.register_provider``):

* ``"hutchinson"``: ``z * (H z)`` with a Rademacher probe ``z`` (Hutchinson's estimate of
  the Hessian diagonal; AdaHessian, OASIS). ``H z`` comes from the graph of the last
  ``loss.backward(create_graph=True)`` (``p.grad`` has a ``grad_fn``), or, when ``step``
  got a closure and the gradients carry no graph, from re-evaluating the closure with
  ``backward`` made to keep the graph. The group's ``num_samples`` (default 1) probes are
  averaged.
* ``"hutchinson_gaussian"``: the same estimate with a standard normal probe ``z``
  (Sophia's; pytorch-optimizer's ``hessian_distribution="gaussian"``).
* ``"hutchinson_spatial"``: the same estimate with AdaHessian's spatial averaging: for a
  4-D (convolution) weight, ``|z * Hz|`` averaged over the kernel's two spatial dims and
  broadcast back; other shapes are as ``"hutchinson"``.
* ``"grad_at_prev"``: the gradient at the previous iterate on the *current* batch (SPIDER,
  STORM): the closure re-evaluated with every parameter that has a ``prev_param`` state
  (written by the rule) set to it, then parameters and gradients restored bit for bit.

One evaluation serves the whole optimizer: the first group that asks in a step computes
the input for every group whose rule reads it (before any group's kernel has moved a
parameter), the other groups read it from a per-step cache. That is also what makes the
probe one draw over all parameters, in group order, as pytorch-optimizer draws it.

``due(optimizer, group, key)`` tells a catalogue class whether a periodic step (a Hessian
step, a refresh) is next, so it can pick the rule variant that does not read the input.

Probes are drawn from a generator seeded with ``probe_seed(optimizer.seed, step)``: a run
is reproducible and a resumed run draws the same probes. pytorch-optimizer draws from the
global generator, so ``torch.manual_seed(probe_seed(seed, step))`` before its step gives it
the same probes.
"""
from __future__ import annotations

import contextlib
import threading
import weakref

import torch

from .inputs import InputError, register_provider

PREV_PARAM = "prev_param"  # the state a rule writes for "grad_at_prev": the iterate x_{t-1}
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # optimizer -> name -> {p: (token, value)}
_backward_lock = threading.RLock()  # a closure may step another such optimizer


def probe_seed(seed: int, step: int) -> int:
    """The seed of the Hutchinson probes of step ``step`` (1 on the first update)."""
    return (int(seed) * 1_000_003 + int(step)) % (2**63 - 1)


def _owner(optimizer) -> str:
    spec = getattr(optimizer, "spec", None)
    return f"{type(optimizer).__name__} ({spec.name if spec else '?'})"


def _reads(optimizer, group: dict, name: str) -> bool:
    """Whether ``group``'s rule variant reads ``given(name)`` this step."""
    spec = getattr(optimizer, "spec", None)
    if spec is None:
        return False
    decl = spec.build(spec.variant_of(group)).states.get(name)
    return decl is not None and decl.kind == "input"


def next_step(optimizer, group: dict) -> int:
    """The number of the step about to run for ``group`` (1 on the first)."""
    done = [float(optimizer.state[p]["step"]) for p in group["params"]
            if p in optimizer.state and "step" in optimizer.state[p]]
    return int(max(done, default=0.0)) + 1


def due(optimizer, group: dict, key: str) -> bool:
    """Whether the group's next step t is a periodic one: (t - 1) mod group[key] == 0
    (AdaHessian's Hessian steps, SPIDER's refreshes)."""
    period = group[key]
    if float(period) != int(period) or int(period) < 1:
        raise ValueError(f"{type(optimizer).__name__}: {key} = {period!r}; expected a whole "
                         "number of steps >= 1")
    return (next_step(optimizer, group) - 1) % int(period) == 0


def _token(optimizer, p):
    """Identifies one step's inputs: the step count and the very gradient tensor."""
    step = optimizer.state.get(p, {}).get("step", 0.0)  # a state made later in the step: 0
    return (float(step), id(p.grad),
            None if p.grad is None else p.grad._version)


def _cached(optimizer, name: str, params, compute):
    """``compute()`` -> {p: tensor} for every asking param once a step; params from the cache.

    Each value is handed out once (popped), so no estimate outlives its step; a stale entry
    (another step: the parameter's step count or gradient changed) forces a recompute.
    """
    cache = _CACHE.setdefault(optimizer, {}).setdefault(name, {})
    if any(p not in cache or cache[p][0] != _token(optimizer, p) for p in params):
        values = compute()
        cache.clear()
        cache.update({p: (_token(optimizer, p), v) for p, v in values.items()})
    missing = [p for p in params if p not in cache]
    if missing:  # the caller asked for a parameter that compute() did not cover
        raise InputError(f"{_owner(optimizer)}: input {name!r} was not computed for a "
                         f"parameter of shape {tuple(missing[0].shape)} (no gradient after "
                         "re-evaluating the closure?)")
    return [cache.pop(p)[1] for p in params]


def _asking_groups(optimizer, names) -> list[dict]:
    """The groups whose rule reads one of ``names`` this step."""
    return [g for g in optimizer.param_groups if any(_reads(optimizer, g, n) for n in names)]


def _asking(optimizer, names) -> list[torch.Tensor]:
    """Params with a gradient in every group whose rule reads one of ``names``, in order."""
    return [p for g in _asking_groups(optimizer, names) for p in g["params"]
            if p.grad is not None]


# ---- Hutchinson ---------------------------------------------------------------------------

@contextlib.contextmanager
def _backward_keeps_graph():
    """While the closure is re-evaluated, ``backward()`` builds the gradient's graph.

    ``Tensor.backward`` calls ``torch.autograd.backward`` through the module attribute, so
    swapping it for the duration of one closure call covers both spellings. The swap is
    process-wide: another thread calling backward meanwhile would also keep its graph.
    """
    with _backward_lock:
        original = torch.autograd.backward

        def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
                     grad_variables=None, inputs=None):
            return original(tensors, grad_tensors, retain_graph, True, inputs=inputs)

        torch.autograd.backward = backward
        try:
            yield
        finally:
            torch.autograd.backward = original


def _num_samples(optimizer, group: dict) -> int:
    """The first asking group's num_samples: one probe draw serves every group."""
    n = group.get("num_samples", 1)
    if float(n) != int(n) or int(n) < 1:
        raise InputError(f"{_owner(optimizer)}: num_samples = {n!r}; the Hutchinson estimate "
                         "needs a whole number of probes >= 1")
    return int(n)


def _hutchinson_all(optimizer, closure, gaussian: bool = False) -> dict:
    groups = _asking_groups(optimizer, ("hutchinson_gaussian",) if gaussian
                            else ("hutchinson", "hutchinson_spatial"))
    params = [p for g in groups for p in g["params"] if p.grad is not None]
    if not params:
        return {}
    rebuilt = False
    if all(p.grad.grad_fn is None for p in params):
        if closure is None:
            raise InputError(f"{_owner(optimizer)} needs loss.backward(create_graph=True) or a "
                             "closure: the Hutchinson Hessian estimate differentiates the "
                             "gradient, and the gradients carry no graph")
        for p in params:  # the closure's backward must not add to the old gradients
            p.grad = None
        with torch.enable_grad(), _backward_keeps_graph():
            closure()
        rebuilt = True
        params = [p for p in params if p.grad is not None]
        if all(p.grad.grad_fn is None for p in params):
            raise InputError(f"{_owner(optimizer)}: re-evaluating the closure left gradients "
                             "without a graph (does it call backward() on the loss?)")
    step = max(next_step(optimizer, g) for g in groups)
    gens: dict[torch.device, torch.Generator] = {}
    n = _num_samples(optimizer, groups[0])
    outputs = [p for p in params if p.grad.grad_fn is not None]
    estimate = {p: torch.zeros_like(p, memory_format=torch.contiguous_format) for p in params}
    for i in range(n):
        zs = {}
        for p in params:  # one draw over all params in group order, as pytorch-optimizer
            if p.device not in gens:
                gens[p.device] = torch.Generator(p.device).manual_seed(
                    probe_seed(getattr(optimizer, "seed", 0), step))
            zs[p] = (torch.randn(p.shape, generator=gens[p.device], dtype=p.dtype,
                                 device=p.device) if gaussian else
                     torch.randint(0, 2, p.shape, generator=gens[p.device], dtype=p.dtype,
                                   device=p.device) * 2.0 - 1.0)
        hzs = torch.autograd.grad([p.grad for p in outputs], params,
                                  grad_outputs=[zs[p] for p in outputs],
                                  retain_graph=i < n - 1, allow_unused=True)
        for p, hz in zip(params, hzs):
            if hz is not None:  # None: no gradient depends on p, its row of H is zero
                estimate[p].addcmul_(hz, zs[p], value=1.0 / n)
    if rebuilt:  # the graph is ours: drop it now rather than at the user's zero_grad
        for p in params:
            p.grad = p.grad.detach()
    return estimate


def spatial_average(h: torch.Tensor) -> torch.Tensor:
    """AdaHessian's spatial averaging (Yao et al. 2020, Sec. 3.3): a 4-D convolution
    kernel's ``|h|`` averaged over its two spatial dims; other shapes unchanged."""
    if h.dim() != 4:
        return h
    return h.abs().mean(dim=(2, 3), keepdim=True).expand_as(h)


def hutchinson(optimizer, group, params, closure):
    return _cached(optimizer, "hutchinson", list(params),
                   lambda: _hutchinson_all(optimizer, closure))


def hutchinson_gaussian(optimizer, group, params, closure):
    return _cached(optimizer, "hutchinson_gaussian", list(params),
                   lambda: _hutchinson_all(optimizer, closure, gaussian=True))


def hutchinson_spatial(optimizer, group, params, closure):
    return [spatial_average(h) for h in hutchinson(optimizer, group, params, closure)]


# ---- gradient at the previous iterate -----------------------------------------------------

def _grad_at_prev_all(optimizer, closure) -> dict:
    asking = _asking(optimizer, ("grad_at_prev",))
    if not asking:
        return {}
    if closure is None:
        raise InputError(f"{_owner(optimizer)} needs a closure: the gradient at the previous "
                         "iterate on the current batch is computed by re-evaluating it with "
                         "the parameters set to the previous iterate "
                         "(optimizer.step(closure))")
    everything = [p for g in optimizer.param_groups for p in g["params"]]
    moved = [p for p in everything
             if p in optimizer.state and PREV_PARAM in optimizer.state[p]]
    current = {p: p.detach().clone() for p in moved}
    grads = {p: p.grad for p in everything}
    try:
        with torch.no_grad():
            for p in moved:
                p.copy_(optimizer.state[p][PREV_PARAM])
        for p in everything:  # the closure's zero_grad/backward must not touch g(x_t)
            p.grad = None
        with torch.enable_grad():
            closure()
        result = {p: (torch.zeros_like(p) if p.grad is None else p.grad.detach())
                  for p in asking}
    finally:
        with torch.no_grad():
            for p in moved:
                p.copy_(current[p])
        for p in everything:
            p.grad = grads[p]
    return result


def grad_at_prev(optimizer, group, params, closure):
    return _cached(optimizer, "grad_at_prev", list(params),
                   lambda: _grad_at_prev_all(optimizer, closure))


register_provider("hutchinson", hutchinson)
register_provider("hutchinson_spatial", hutchinson_spatial)
register_provider("hutchinson_gaussian", hutchinson_gaussian)
register_provider("grad_at_prev", grad_at_prev)
