"""Scoped states in a step (dsl/scoped.py, compiler/passes/scoped_states.py).

A scoped state is read by the kernels as a finished reduction result and written by the
runtime, in three places of the step (runtime/reduce_stage.py, runtime/stepping.py):

* ``read`` (before the reduce stages): each parameter's current values become the first
  entries of its finished results, in the compute dtype and shaped to broadcast against
  it. A "group" state is one value for the group: it is read from the first stepped
  parameter that already holds it (a parameter stepping for the first time joins the
  group's value), an "optimizer" state likewise over every group; such a value is
  copied (an earlier bucket's commit must not change what a later bucket's kernels
  read). A parameter's own tensor, row or column state is read in place: only its own
  bucket's commit writes it, after that bucket's kernels ran (a copy was a pass over a
  1-D parameter's row state, one value per element, every step); a differentiable step
  copies it too (autograd may hold it);
* ``compute`` (after the reduce stages, before anything is written): the new values, from
  the finished results by the generated function of compiler/printers/scoped.py;
* ``commit`` (after a bucket's kernels succeeded): stored into ``optimizer.state``; each
  parameter of a group holds the group's value. A skipped or failed step stores nothing.
"""
from __future__ import annotations

import torch

from ..compiler.printers.scoped import scoped_source
from ..kernels.cache import load_module
from ..kernels.torch_launcher import compute_dtype
from .reductions import _broadcastable

_FUNCTIONS: dict[str, object] = {}  # plan fingerprint -> its generated ``scoped``
# id(plan) -> (plan, its function): asked on every step, and a fingerprint prints the
# whole plan with SymPy (~7 ms for Adafactor's); the plan is kept so its id is not reused
_BY_PLAN: dict[int, tuple] = {}


def _function(plan):
    found = _BY_PLAN.get(id(plan))
    if found is not None:
        return found[1]
    key = plan.fingerprint()
    fn = _FUNCTIONS.get(key)
    if fn is None:
        fn = _FUNCTIONS[key] = load_module(scoped_source(plan), "scoped").scoped
    if len(_BY_PLAN) > 1024:  # bounded, as the compiled-rule cache is (runtime/compiled.py)
        _BY_PLAN.clear()
    _BY_PLAN[id(plan)] = (plan, fn)
    return fn


def _current(opt, work, p, name: str):
    """The state as this step finds it: installed, or fresh (made by collect)."""
    held = opt.state.get(p)
    if held and name in held:
        return held[name], True
    return work.fresh[p][name], False


def _source_key(work, r) -> tuple:
    """Which parameters share one value: a group's (same group), or every group's that
    runs the same rule (an optimizer-scoped "d" of Prodigy is not DAdaptAdam's "d")."""
    if r.span == "optimizer":
        return None, work.compiled.plan.rule_name, str(r.expr)
    return work.index, None, str(r.expr)


def _shared_sources(opt, works) -> dict:
    """{_source_key: the parameter whose copy of a group- or optimizer-scoped state every
    parameter reads}: the first stepped one already holding it."""
    sources: dict = {}
    for work in works:
        for r in work.compiled.plan.scoped_loads:
            if r.scope != "group":
                continue
            key = _source_key(work, r)
            if key in sources and sources[key][2]:
                continue  # an earlier group's parameter holds it already
            for p in (p for b in work.buckets for p in b.keys):
                held = _current(opt, work, p, str(r.expr))[1]
                if key not in sources or held:
                    sources[key] = (work, p, held)
                if held:
                    break
    return sources


def read(opt, works) -> None:
    """Start each parameter's finished results with its scoped states' current values."""
    sources = _shared_sources(opt, works)
    # a differentiable step (autograd on) keeps its own copy: the graph may hold the value
    # the commit overwrites in place
    recorded = torch.is_grad_enabled()
    for work in works:
        loads = work.compiled.plan.scoped_loads
        if not loads or work.skipped:
            continue
        for b in work.buckets:
            if b.sharded:  # (before any write: the reduce stage writes nothing)
                raise NotImplementedError(
                    f"{type(opt).__name__}: {b.labels[0]}: rule {work.compiled.plan.rule_name!r} "
                    "keeps scoped states, which sharded (DTensor) parameters do not support yet")
            cdt = compute_dtype(b.params[0].dtype)
            for p in b.keys:
                values = []
                for r in loads:
                    name, owner, at = str(r.expr), work, p
                    shared = r.scope == "group"
                    if shared:
                        owner, at, _ = sources[_source_key(work, r)]
                    value = _current(opt, owner, at, name)[0].to(dtype=cdt,
                                                                  copy=shared or recorded)
                    shaped = value.reshape(()) if r.scope in ("tensor", "group") else \
                        _broadcastable(value.reshape(-1), r.scope, p)
                    values.append(shaped)
                work.reduced[p] = tuple(values)


def compute(works) -> None:
    """Each parameter's new scoped values, from its finished results (writes nothing)."""
    for work in works:
        plan = work.compiled.plan
        if not plan.scoped_stores or work.skipped:
            continue
        fn = _function(plan)
        work.scoped = {}
        for b in work.buckets:
            cdt = compute_dtype(b.params[0].dtype)
            for p in b.keys:
                work.scoped[p] = fn(b.scalars, cdt, work.reduced[p], p)


def commit(opt, work, b) -> None:
    """Store the bucket's new scoped values (its kernels have run)."""
    if not work.scoped:
        return
    names = [name for name, _ in work.compiled.plan.scoped_stores]
    for p in b.keys:
        state = opt.state[p]
        for name, value in zip(names, work.scoped[p]):
            target = state[name]
            target.copy_(value.reshape(target.shape).to(target.dtype))
