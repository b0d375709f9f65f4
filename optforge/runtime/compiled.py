"""Compiled rules: one per (rule function, structural variant), shared by all optimizers.

Compilation (lowering to a plan, generating and importing code) happens once per
variant per backend. Hyperparameters are run-time arguments, so nothing here is
keyed by their values; ``STATS`` counts compilations so tests can prove it.
"""
from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from typing import Callable

from ..compiler import KernelPlan, lower
from ..compiler.packed_signs import SIGN_BITS, float_results, vote_ops
from ..compiler.printers.host import prologue_source
from ..compiler.quant_plan import check_quantizable, quantized_states
from ..compiler.rounding import mark_stochastic
from ..compiler.storage import DEFAULT, StorageOptions, with_storage
from ..dsl.rule import Rule
from ..dsl.spec import RuleSpec, Variant
from ..kernels.cache import load_module

STATS: Counter = Counter()  # "plans": rules lowered; "kernels:<backend>": kernels built
# Compiled variants, least recently used first. Keyed by the rule function itself (its
# identity: two functions with one body are two rules), so the cache holds each function
# alive; bounded so a process that builds rules in a loop (hyperparameter searches over
# ad-hoc rule functions) does not grow without limit. Past the bound the least recently
# used variant is dropped and rebuilt if asked for again (its generated code stays in the
# disk cache, so rebuilding is a SymPy lowering, not a compile).
MAX_COMPILED = 512
_cache: OrderedDict[tuple, "CompiledRule"] = OrderedDict()
_lock = threading.Lock()
_NO_RANDOMS: dict = {}


class CompiledPlan:
    """A plan, its host prologue, and its kernels per backend (built lazily)."""

    def __init__(self, spec: RuleSpec, plan: KernelPlan):
        self.spec, self.plan = spec, plan
        self._prologue: Callable = load_module(prologue_source(self.plan), "host").prologue
        self._launchers: dict[str, Callable] = {}
        # asked on every step: answered once here
        # a collective's result may be supplied instead of communicated (runtime/inputs.py)
        self.collective_results = frozenset(op.result for op in self.plan.collectives)
        self.has_inputs = any(d.kind == "input" for d in self.plan.states.values()) \
            or bool(self.collective_results)
        self.stored_names = tuple(n for n, d in self.plan.states.items() if d.stored)
        self.stored_set = frozenset(self.stored_names)
        # (slot, name, declaration) of the stored states: the check stage's list
        self.stored_slots = [(k, name, decl) for k, (name, decl)
                             in enumerate(self.plan.states.items()) if decl.stored]
        self.has_reductions = bool(self.plan.reductions)
        plan = self.plan
        self.has_collectives = bool(plan.collectives)
        self.has_matrix = bool(plan.matrix_stages)
        # the reduce stage has something to do: reductions, a matrix stage's (empty)
        # results, scoped states (read before it, computed after it)
        self.reduces = bool(plan.reductions or plan.matrix_stages or plan.scoped_stores)
        self.has_scoped = bool(plan.scoped_loads or plan.scoped_stores)
        # some reduction totals over every group of the optimizer (global clipping)
        self.spans_optimizer = any(r.span == "optimizer" for r in plan.reductions)
        # stored states the runtime checks even where the launcher checks every tensor it
        # touches: matrix states (the torch matrix stage's) and scoped ones (the runtime's)
        self.runtime_checked_slots = [s for s in self.stored_slots
                                      if s[2].kind in ("matrix", "scoped")]
        # states a bucket does not take from the parameters' state dicts: buffers and
        # packed sign bits, made for the step (runtime/stepping.py's columns)
        self.made_columns = frozenset(n for n, d in plan.states.items()
                                      if d.kind == "buffer" or d.dtype == SIGN_BITS)

    def scalars(self, hyper_values: dict[str, float], step: float,
                random_values: dict[str, float] | None = None) -> tuple:
        """The kernel's run-time scalars for one group at one step (float64 on the host)."""
        # (a pre-stage and its main stage may take different random scalars: each reads
        # its own from the dict)
        try:
            return self._prologue(hyper_values, random_values or _NO_RANDOMS, step)
        except (ArithmeticError, ValueError, TypeError, KeyError) as exc:
            shown = ", ".join(f"{k}={v:g}" for k, v in hyper_values.items())
            raise ValueError(f"rule {self.spec.name!r} at step {step:g}: the scalar prologue "
                             f"failed ({exc}) with hyperparameters {shown}") from exc

    def launcher(self, backend) -> Callable:
        if backend.name not in self._launchers:
            with _lock:
                if backend.name not in self._launchers:
                    self._launchers[backend.name] = backend.build(self.plan)
                    STATS[f"kernels:{backend.name}"] += 1
        return self._launchers[backend.name]


class CompiledRule(CompiledPlan):
    """A rule variant: its plan (and the plan of its elementwise pre-stage, ``pre``, when
    a matrix rule has one), prologues and kernels; ``storage``: how its states and
    parameter are stored (compiler/storage.py)."""

    def __init__(self, spec: RuleSpec, variant: Variant, guard_nonfinite: bool = False,
                 storage: StorageOptions = DEFAULT):
        self.variant, self.storage = variant, storage
        self.rule: Rule = with_storage(spec.build(variant), storage)
        plan = lower(self.rule, spec.hyper_symbols, guard_nonfinite)
        if quantized_states(plan):  # refused here, before any input or state is touched
            check_quantizable(plan, "any")
        super().__init__(spec, mark_stochastic(plan, storage))
        self.pre = CompiledPlan(spec, self.plan.pre_plan) if self.plan.pre_plan else None
        # the buffers the pre-stage writes: made before it runs (the matrix stage's are
        # its own result tensors)
        self.early_buffers = frozenset(r.name for r, _ in self.pre.plan.stores) \
            if self.pre else frozenset()
        # 1-bit collective results the elementwise kernel counts from packed bits
        self.packed_results = frozenset(vote_ops(self.plan))
        self._supplied: CompiledPlan | None = None
        STATS["plans"] += 1

    @property
    def supplied(self) -> CompiledPlan:
        """The elementwise stage reading results a user supplies (float32, not bits):
        built on first use, the same math after the load (compiler/packed_signs.py)."""
        if self._supplied is None:
            with _lock:
                if self._supplied is None:
                    self._supplied = CompiledPlan(self.spec, float_results(self.plan))
        return self._supplied


def compile_rule(spec: RuleSpec, variant: Variant, guard_nonfinite: bool = False,
                 storage: StorageOptions = DEFAULT) -> CompiledRule:
    """The shared CompiledRule for a rule function and variant (and non-finite guard and
    storage options)."""
    key = (spec.fn, variant, guard_nonfinite, storage)
    with _lock:  # an OrderedDict's reordering is not atomic: every touch under the lock
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = CompiledRule(spec, variant, guard_nonfinite, storage)
            while len(_cache) > MAX_COMPILED:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
    return found
