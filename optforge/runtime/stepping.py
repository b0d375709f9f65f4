"""One ``Optimizer.step()`` as named stages, each a small function:

    collect -> check -> reduce -> finish scalars -> pre-stage -> matrix -> elementwise -> commit

A step is all or nothing up to its first write. *collect* (the parameters with a
gradient, grouped into buckets, and the states a new parameter gets, not installed)
and *check* (every tensor every kernel will touch) run for every param group first;
then the *reduce* stages of every group (they write nothing; ``over="optimizer"``
totals span all groups, so they run side by side, see runtime/reduce_stage.py); then
*finish scalars* (the non-finite decision was taken, the matrix stage's run-time
arguments are checked). Only then do the writes start, bucket by bucket: new states
are installed, the *pre-stage*, *matrix* and *elementwise* kernels run, and *commit*
writes ``step`` and matrix states and calls the optimizer's ``step_committed`` hook. An
error in any check of any group therefore leaves every parameter, state and step
count as it was, and names the parameter by its index in its group
(``parameter 1 of group 2``), not by its place in a bucket.

Where sharding hooks in (runtime/shards.py, runtime/shard_matrix.py): *collect* hands
the kernels a DTensor parameter's local shard (``shards.local``), *reduce* combines
the shards' partial reductions with one all-reduce per stage (``shards.combine``), and
*matrix* gathers each sharded matrix on one owning rank and scatters the result
(``shard_matrix.run``). Where distribution hooks in: on a step that runs collectives,
*collect* and *check* end with one small all-reduce, so every rank raises if any rank
refused (runtime/step_verdict.py); a rule's collectives (allreduce, majority_vote) run
after *finish scalars*: the pre-stage of those rules (what they send), then one exchange
for all groups, before any write (runtime/collective_stage.py). Where low-precision
storage hooks in: a state's storage dtype is the plan's (``TensorRef.dtype``); *collect*
allocates states and buffers in it, the kernels round on store inside the *elementwise* and *pre-stage* launches (nearest-even,
or stochastic where the plan asks), and *check* refuses a state of another dtype.
Scales of scaled storage formats would be run-time scalars made in *finish scalars*.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from ..dsl.randomness import draw
from ..compiler.packed_signs import SIGN_BITS, segment_size
from . import collective_stage, scoped_states, shard_matrix, shards, staging, step_verdict
from .backends import BACKENDS
from .reduce_stage import reduce
from . import quantized_states
from .state import new_state, state_shape, storage_dtype
from .step_work import Bucket, GroupStep, Labels, serialised, step_lock  # noqa: F401

SKIP_COUNTER = "nonfinite_skips"  # param_groups key: steps skipped for NaN/Inf gradients
_PLAIN_TYPES = frozenset({torch.Tensor, torch.nn.Parameter})
_NO_RANDOMS: dict = {}

__all__ = ["run", "collect", "check", "reduce", "finish_scalars", "pre_stage", "matrix",
           "elementwise", "commit", "SKIP_COUNTER", "serialised", "step_lock"]


def run(opt, given: list[dict], compiled: list) -> None:
    """Every stage of one step over every param group (``given[i]``: group i's inputs,
    ``compiled[i]``: its compiled rule variant). A stage with nothing to do for a rule
    (no reductions, no matrix stage, no collectives...) is not called at all: each call
    is a few hundred nanoseconds of a step whose fixed cost users see on small models."""
    verdict = step_verdict.verdict_group(opt, compiled)
    if verdict is None:  # single process, or no collectives in this step
        works = _collect_and_check(opt, given, compiled)
        reduces, communicates = _needs(works)
        if communicates:
            collective_stage.check(opt, works)  # (refusals; no other rank to agree with)
    else:
        with step_verdict.agreed(verdict) as facts:  # every rank fails, or none
            works = _collect_and_check(opt, given, compiled)
            facts.values, facts.detail = collective_stage.check(opt, works)
        reduces, communicates = _needs(works)
    if reduces:
        reduce(opt, works)
        for work in works:
            finish_scalars(opt, work)
    if communicates:
        collective_stage.exchange(opt, works, pre_stage)  # rules' allreduce / majority_vote
    for work in works:
        if not work.skipped:
            if work.fresh:
                install_states(opt, work)
            for b in work.buckets:
                if b.pre is not None:
                    pre_stage(b)
                new_matrices = matrix(opt, work, b) if work.compiled.has_matrix else {}
                elementwise(work, b)
                commit_bucket(opt, b, new_matrices)
                if work.scoped:
                    scoped_states.commit(opt, work, b)
        commit(opt, work)


def _needs(works: list) -> tuple[bool, bool]:
    """Whether any group of the step has reduce-stage work, and any runs collectives."""
    reduces = communicates = False
    for work in works:
        reduces |= work.compiled.reduces
        communicates |= work.compiled.has_collectives
    return reduces, communicates


def _collect_and_check(opt, given: list[dict], compiled: list) -> list[GroupStep]:
    """Collect then check each param group, all before any write."""
    works = []
    for index, group in enumerate(opt.param_groups):
        work = collect(opt, index, group, given[index], compiled[index])
        if work is not None:
            check(opt, work)
            works.append(work)
    return works


# ---- collect ---------------------------------------------------------------------------
def collect(opt, index: int, group: dict, given: dict, compiled) -> GroupStep | None:
    """The group's buckets and the states its new parameters get (not installed);
    ``compiled``: the group's rule variant (a subclass's per-step hyperparameters that
    are not the group itself may select another)."""
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        opt.step_hyperparameters(index, group, params, given)  # (OASIS resets its scalars)
        return None
    hyper = opt.step_hyperparameters(index, group, params, given)
    # plain tensors and Parameters, the usual case, need no shard handling (checked at C
    # speed: a call per parameter is a visible cost on a 200-tensor group)
    plain = _PLAIN_TYPES.issuperset(map(type, params))
    if hyper is not group:
        compiled = opt._compiled(hyper)
    # 8-bit states: tensors below quant_min_numel run the float32-state variant
    variants = quantized_states.variants(opt, hyper, compiled)
    stored = compiled.stored_set  # (the same names in both variants)
    hyper_values = opt.spec_of(group).hyper_values(hyper)
    found, fresh, states = defaultdict(list), {}, opt.state
    small, decls = False, compiled.plan.states
    for i, p in enumerate(group["params"]):
        if p.grad is None:
            continue
        if variants is not None:
            small = not variants.quantizes(p)
            decls = (variants.small if small else compiled).plan.states
        # the parameter's states as this step sees them, looked up once (a tensor key's
        # hash is a Python call: ~0.3 us a lookup, per state and parameter)
        current = states.get(p)  # .get: opt.state is a defaultdict
        if not current:  # (a DTensor parameter gets DTensor states, placed like it)
            fresh[p] = current = new_state(decls, p, hyper_values)
        elif not current.keys() >= stored:  # a flag turned on later (amsgrad) adds a state
            fresh[p] = {name: new_state({name: decls[name]}, p, hyper_values)[name]
                        for name in stored - current.keys()}
            current = {**current, **fresh[p]}
        view = p if plain else shards.local(p)  # sharding hook: kernels step local shards
        found[(view.device, view.dtype, float(current["step"]) + 1.0, small)].append(
            (i, p, current))
    buckets = [_bucket(opt, index, variants.small if key[3] else compiled, hyper_values,
                       given, key[:3], members, plain)
               for key, members in found.items()]
    return GroupStep(index, group, hyper, compiled, buckets, fresh)


def _bucket(opt, index, compiled, hyper_values, given, key, members, plain) -> Bucket:
    device, dtype, step = key
    indices, keys, state_dicts = map(list, zip(*members))  # (transposed at C speed)
    sharded = not plain and any(map(shards.is_sharded, keys))
    params = [shards.local(p) for p in keys] if sharded else keys
    plan, decls = compiled.plan, compiled.plan.states
    randoms = {name: draw(dist, opt.seed, index, step, name)
               for name, dist in plan.randoms.items()} if plan.randoms else _NO_RANDOMS

    def column(name):
        if name in given:
            values = [given[name][p] for p in keys]
        elif name not in compiled.made_columns:  # a stored state
            values = [d[name] for d in state_dicts]
        elif decls[name].dtype == SIGN_BITS:  # packed signs, flag bytes clear
            return [torch.zeros(segment_size(p.numel()), dtype=torch.uint8, device=p.device)
                    for p in params]
        else:  # a buffer, allocated in the state's storage dtype; only the pre-stage
            # writes into one before the kernels (the matrix stage hands over its own
            # result tensors, so its buffers need no placeholder: None until then)
            return ([torch.empty_like(p, dtype=storage_dtype(decls[name], p)) for p in params]
                    if name in compiled.early_buffers else [None] * len(params))
        return [shards.local(v) for v in values] if sharded else values

    launcher = opt.launcher_for
    if sharded and any(shards.shapes_differ(plan, p) for p in keys if shards.is_sharded(p)):
        launcher = _torch_launcher  # kernels that count elements from the shard's shape
    pre = ((launcher(compiled.pre, device, dtype),
            compiled.pre.scalars(hyper_values, step, randoms)) if compiled.pre else None)
    # results a user supplies are floats, not bits: the plan reading them as such
    main = compiled.supplied if compiled.packed_results & given.keys() else compiled
    return Bucket(launcher(main, device, dtype), keys, params,
                  Labels(indices, index),
                  [shards.local(p.grad) for p in keys] if sharded else [p.grad for p in keys],
                  [column(name) for name in decls],
                  compiled.scalars(hyper_values, step, randoms), step, pre, sharded=sharded,
                  members=shards.nonempty(params) if sharded else None,
                  state_dicts=state_dicts, compiled=compiled)


def _torch_launcher(compiled, device, dtype):
    """The torch backend's launcher for a bucket (see ``shards.shapes_differ``)."""
    torch_backend = BACKENDS["torch"]
    return staging.wrap(compiled.launcher(torch_backend),
                        reduces=compiled.has_reductions,
                        strided_tensors=torch_backend.capabilities.strided_tensors)


# ---- check -----------------------------------------------------------------------------
def check(opt, work: GroupStep) -> None:
    """Everything the group's kernels will touch, before any kernel of the step runs."""
    for b in work.buckets:
        compiled = b.compiled or work.compiled  # (8-bit: a bucket's own variant)
        for j, p in enumerate(b.keys):
            opt.check_parameter(p, b.labels, j, work.compiled)
            if b.sharded:
                shards.check(p, b.labels[j], work.compiled, opt.state.get(p))
        # numba and triton check every tensor their kernels touch (dtype, device, size)
        # in check() below; matrix states are the torch matrix stage's, checked here
        # (and scoped states, which the runtime reads and writes: scoped_states.py)
        own = compiled.stored_slots
        if own and b.launcher.checks_tensors:
            own = compiled.runtime_checked_slots
        for k, name, decl in own:
            for j, (p, value) in enumerate(zip(b.params, b.states[k])):
                if b.sharded and decl.kind == "matrix" and shards.is_sharded(b.keys[j]):
                    continue  # rows of a DTensor: shards.check checked the whole state
                if not (isinstance(value, torch.Tensor) and decl.kind == "state"
                        and value.shape == state_shape(decl, p) and value.device == p.device
                        and value.dtype == storage_dtype(decl, p)):
                    _check_state(name, decl, p, value, opt, b.labels[j])  # explains
        # what the launcher derived (its address tables) is reused by the launch
        if b.members is not None and not b.members:  # only empty shards: no kernel runs
            continue
        params, grads, states, labels, _ = b.kernel_args()
        b.prepared = b.launcher.check(params, grads, states, labels)
        if b.pre is not None:
            b.pre[0].check(params, grads, states, labels)


def _check_state(name, decl, p, value, opt, label) -> None:
    """A stored state: a tensor of the right shape, storage dtype and device."""
    ok = isinstance(value, torch.Tensor)
    want = state_shape(decl, p)
    if ok:
        dtype = storage_dtype(decl, p)
        ok = value.shape == want and value.dtype == dtype and value.device == p.device
    if not ok:
        shown = (f"{tuple(value.shape)} {value.dtype} on {value.device}"
                 if isinstance(value, torch.Tensor) else f"a {type(value).__name__}")
        raise RuntimeError(f"{type(opt).__name__}: {label}: state {name!r} is {shown}; the "
                           f"step needs {tuple(want)} {storage_dtype(decl, p)} on {p.device}")


# ---- finish scalars --------------------------------------------------------------------
def finish_scalars(opt, work: GroupStep) -> None:
    """After the reductions: the matrix stage's run-time arguments (out-of-range scalars,
    which may depend on finished reductions) raise before any write."""
    if work.skipped or not work.compiled.plan.matrix_stages:
        return
    checker = work.compiled.launcher(BACKENDS["torch"])
    for b in work.buckets:
        checker.matrix_check(0, b.params, b.grads, b.states, b.scalars, b.reduced(work))


# ---- the writes ------------------------------------------------------------------------
def install_states(opt, work: GroupStep) -> None:
    """The new parameters' states: installed before the kernels write into them."""
    for p, states in work.fresh.items():
        if states:
            opt.state[p].update(states)


def pre_stage(b: Bucket) -> None:
    """Fills the ``pre<i>`` buffers (and steps the states nothing later reads)."""
    if b.pre is not None and b.members != []:
        params, grads, states, _, _ = b.kernel_args()
        b.pre[0](params, grads, states, b.pre[1])


def matrix(opt, work: GroupStep, b: Bucket) -> dict:
    """The matrix stage: fills the buffers the elementwise kernel reads into ``b.states``;
    returns the matrix states' new values, written at commit. Sharded parameters are
    gathered on an owning rank (sharding hook)."""
    plan = work.compiled.plan
    if not plan.matrix_stages:
        return {}
    if b.sharded:
        results = shard_matrix.run(work, b)
    else:
        results = opt._matrix_stage(work.compiled, b.params, b.grads, b.states, b.scalars,
                                    b.reduced(work))
    names = list(plan.states)
    new_matrices = {}
    for j, (name, _) in enumerate(plan.matrix_stages[0].outputs):
        values = [r[j] for r in results]
        if plan.states[name].kind == "buffer":
            b.states[names.index(name)] = values
        else:
            new_matrices[name] = values
    return new_matrices


def elementwise(work: GroupStep, b: Bucket) -> None:
    """The fused elementwise kernel: new parameters and states, rounded to their storage
    dtypes on store (the low-precision hook)."""
    if b.members == []:
        return
    params, grads, states, _, reduced = b.kernel_args(work)
    kwargs = {"reduced": reduced} if work.compiled.has_reductions else {}
    if b.prepared is not None:
        kwargs["prepared"] = b.prepared
    b.launcher(params, grads, states, b.scalars, **kwargs)


def commit_bucket(opt, b: Bucket, new_matrices: dict) -> None:
    """Only after the kernel succeeded: the step count and the matrix states (in the
    tensors the installed states hold: ``b.state_dicts`` shares them)."""
    steps = [d["step"] for d in b.state_dicts]
    if len(steps) > 8 and not steps[0].is_cpu:
        # every one held b.step - 1 (the bucket's key): one launch instead of one per
        # parameter; s + 1 rounds as b.step does, same bits
        torch._foreach_add_(steps, 1)
    else:  # on CPU a fill_ per parameter (~0.7 us) is twice as fast as _foreach_add_
        for t in steps:  # (1.5 us a 0-d tensor: 200 tensors, torch 2.13)
            t.fill_(b.step)
    for name, values in new_matrices.items():
        for d, value in zip(b.state_dicts, values):
            d[name].copy_(value)


def commit(opt, work: GroupStep) -> None:
    """The group's step is done (or skipped): its skip counter, then the optimizer's
    ``step_committed`` hook (OASIS keeps its step size there)."""
    if work.skipped:
        work.group[SKIP_COUNTER] = work.group.get(SKIP_COUNTER, 0) + 1
    opt.step_committed(work.index, work.group, work.hyper, work.skipped)
