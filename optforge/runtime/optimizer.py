"""optforge.Optimizer: a compiled rule as a real ``torch.optim.Optimizer``.

Hyperparameters live in ``param_groups`` like torch's, so schedulers, per-group
settings and checkpoints work unchanged; they reach the kernels as run-time
scalars, so changing them never recompiles. State keys follow torch (``step``
as a float32 tensor, ``exp_avg``...), so torch checkpoints load.
"""
from __future__ import annotations


import torch

from ..dsl.spec import RuleSpec
from . import checkpoint
from .backends import BACKENDS, BackendError, bucket_launcher, check_backend_name, select
from . import staging
from .compiled import compile_rule
from .copies import get_state, restore_spec
from .gc_pause import gc_paused
from .group_keys import inherited, seen_keys, unread_keys, warn_new_keys, warn_unread
from .progress import announce_if_slow
from .inputs import gather
from .module_stats import LayerStats
from .parameter_checks import refuse_parameter
from .routing import RULE_KEY, resolve_rule
from . import stepping
from . import storage_options
from .stepping import SKIP_COUNTER  # noqa: F401 - re-exported (param_groups key)
from .torch_args import (IMPL_FLAGS, check_aliases, check_differentiable, check_flags,
                         check_intervals, check_ranges, check_tensor_sizes, check_types)

_NO_INPUTS: dict = {}  # a rule that reads no inputs (never written to)


class Optimizer(torch.optim.Optimizer):
    """``Optimizer(params, rule, backend="auto", **hyperparameters)``.

    ``rule`` is a rule function (or ``RuleSpec``); its keyword defaults are the
    hyperparameters, overridable here and per param group.
    """

    # torch's implementation flags this class keeps in param_groups, with their defaults
    # (torch-named classes list exactly torch's; see runtime/torch_args.py)
    torch_flags: dict = IMPL_FLAGS
    # gradients may be sparse (torch: SGD, Adagrad); they are stepped as their dense sum,
    # which is what torch's sparse paths compute for these rules
    supports_sparse_grads: bool = False
    # param_groups keys a subclass writes itself (OASIS's step size): never warned about
    own_group_keys: frozenset = frozenset()

    def __init__(self, params, rule, *, backend: str = "auto", skip_nonfinite: bool = False,
                 seed: int = 0, process_group=None, **hyper):
        self.spec = rule if isinstance(rule, RuleSpec) else RuleSpec(rule)
        check_backend_name(backend)
        self._check_keys(hyper, "the constructor")
        defaults = {**self.spec.defaults, **self.torch_flags, **hyper}
        self.check_group(defaults, "defaults")
        if defaults.get("differentiable"):
            # only the torch backend's generated code is visible to autograd
            if backend not in ("auto", "torch"):
                raise ValueError(f"{type(self).__name__}: differentiable=True needs "
                                 f"backend='torch' (autograd cannot see the {backend!r} "
                                 "kernels), got backend={backend!r}")
            backend = "torch"
        self.backend = backend
        # Count NaN/Inf gradient elements in the first reduce stage; a group that has any
        # skips its step, leaving params, states and step counts untouched.
        self.skip_nonfinite = bool(skip_nonfinite)
        # Random scalars (random_scalar in the DSL) are drawn from (seed, group, step, name).
        self.seed = int(seed)
        # The torch.distributed group a rule's collectives (allreduce, majority_vote) run
        # over; None: the default (WORLD) when initialised (runtime/collective_stage.py).
        self.process_group = process_group
        # what a group with its own "rule" inherits (see group_keys)
        self.constructor_hyper = dict(hyper)
        super().__init__(params, defaults)

    # ---- param groups -------------------------------------------------------------
    def spec_of(self, group: dict) -> RuleSpec:
        """The rule a param group runs: its ``"rule"`` entry, else the optimizer's."""
        if RULE_KEY not in group:
            return self.spec
        return resolve_rule(group[RULE_KEY], f"{type(self).__name__}: a param group")

    def _check_keys(self, group: dict, where: str) -> None:
        """Constructor keywords must be the rule's (a TypeError, as torch's); a group's
        keys that no rule reads are a warning (torch lets any key into a group)."""
        spec = self.spec_of(group)
        if where == "the constructor":  # only the rule's own names and flags, as torch
            unknown = sorted(set(group) - {*spec.defaults, *self.torch_flags,
                                           *storage_options.STORAGE_KEYS})
            if unknown:
                raise TypeError(f"{type(self).__name__} ({spec.name}): unknown "
                                f"hyperparameter(s) {unknown} in {where}; known: "
                                f"{sorted(spec.defaults)}")
            return
        unknown = unread_keys(group, self._readable_keys(spec))
        if unknown:
            warn_unread(type(self).__name__, spec.name, where, unknown, spec.defaults)

    def _readable_keys(self, spec: RuleSpec) -> set:
        return {*spec.defaults, *spec.aliases, *self.torch_flags, *self.own_group_keys,
                *storage_options.STORAGE_KEYS, SKIP_COUNTER, RULE_KEY}

    def check_group(self, group: dict, where: str) -> None:
        """Raise naming the key if a param group's values are malformed: types, torch's
        ranges and messages, storage options. Called for the defaults, every added group
        and every loaded one, before anything is changed. A public hook: a subclass adds
        its own refusals (Muon's ``adjust_lr_fn``) and calls ``super().check_group``."""
        name = type(self).__name__
        spec = self.spec_of(group)
        check_tensor_sizes(group, spec.defaults, name)
        check_types(group, spec.defaults, name, where)
        check_ranges(group, spec.defaults, name)
        check_aliases(group, spec.aliases, name, where)
        check_intervals(group, spec.interval_keys(group), name, where)
        check_flags(group, self.torch_flags, name)
        check_differentiable(group, spec.defaults, name)
        storage_options.check(spec, group, name, where)

    def add_param_group(self, param_group: dict) -> None:
        where = f"param group {len(self.param_groups)}"
        self._check_keys(param_group, where)
        routed = RULE_KEY in param_group
        defaults = self.defaults
        if routed:  # that rule's defaults and the constructor's values it shares
            flags = {k: self.defaults[k] for k in self.torch_flags if k in self.defaults}
            rule_defaults = self.spec_of(param_group).defaults
            shared = inherited(getattr(self, "constructor_hyper", {}),
                               {*rule_defaults, *storage_options.ANY_RULE_KEYS})
            param_group = {**rule_defaults, **flags, **shared, **param_group}
            # the constructor's storage options the group did not inherit are not its
            # (state_dtypes names the constructor rule's states)
            defaults = {k: v for k, v in defaults.items()
                        if k not in storage_options.STORAGE_KEYS}
        # checked before torch appends it: a refused group leaves no trace
        self.check_group({**defaults, **param_group}, where)
        own = set(param_group)
        super().add_param_group(param_group)
        seen_keys(self, len(self.param_groups) - 1).update(own)  # warned once, above
        if routed:
            for key in set(self.param_groups[-1]) - own:
                del self.param_groups[-1][key]
        if getattr(self, "skip_nonfinite", False):
            self.param_groups[-1].setdefault(SKIP_COUNTER, 0)
        spec = self.spec_of(self.param_groups[-1])  # DSL errors surface here, not at step 1
        with gc_paused():  # a SymPy build: many objects (see gc_pause)
            spec.build(spec.variant_of(self.param_groups[-1]))

    # ---- the step -----------------------------------------------------------------
    # Under torch.compile the step is one graph break: Dynamo must not trace into the
    # numba dispatcher (it crashes there) nor guard on the plan's objects (a recompile per
    # step). torch.optim's step hooks/profiling wrapper, which wraps this method, stays
    # traceable; only the body below runs eagerly. Concurrent calls from several threads
    # run one after another (stepping.serialised), a subclass's own step (MKOR,
    # AdaHessian) too: the lock is re-entrant.
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = torch.compiler.disable(stepping.serialised(cls.step))

    @torch.compiler.disable
    @stepping.serialised
    def step(self, closure=None, inputs=None):
        """One update of every parameter that has a gradient; returns the closure's loss.

        ``inputs`` supplies tensors the rule reads with ``given(name)``:
        ``{name: {param: tensor}}`` (see ``optforge.runtime.inputs``).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # The first step does the first-use work (SymPy builds, numba import, kernel
        # loads) with the garbage collector paused (see gc_pause), but not the gathering
        # of inputs, which may run the closure again (Hutchinson probes, grad_at_prev).
        first = not getattr(self, "_stepped", False)
        # Numba's OpenMP pool, launched by the first numba kernel of the process, resets
        # torch's intra-op thread count (torch.set_num_threads(1) became 2): put it back,
        # or user settings are lost and torch.compile recompiles on the changed global.
        threads = torch.get_num_threads()
        try:
            if first:
                with announce_if_slow(self._compiling):
                    self._step_groups(True, closure, inputs)
            else:  # (no context managers on the every-step path: each is a few calls)
                self._step_groups(False, closure, inputs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        self._stepped = True
        return loss

    def _compiling(self) -> str:
        """What a first step compiles, for the slow-first-step notice (see progress)."""
        parts = {}
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None] or group["params"]
            if not params:
                continue
            try:
                backend = select(self.backend, params[0].device, params[0].dtype).name
            except BackendError:
                backend = self.backend
            where = f"{backend} kernels for {str(params[0].dtype).replace('torch.', '')}"
            parts.setdefault(self.spec_of(group).name, set()).add(where)
        return "; ".join(f"rule {name} ({', '.join(sorted(w))})" for name, w in parts.items())

    def _step_groups(self, first: bool, closure, inputs) -> None:
        warn_new_keys(self)
        # torch's convention: autograd records the step only with differentiable=True
        # (set and restored by hand: torch.set_grad_enabled's context manager is three
        # Python calls a step)
        was = torch.is_grad_enabled()
        torch._C._set_grad_enabled(bool(self.defaults.get("differentiable", False)))
        try:
            # each group's compiled variant, looked up once per step
            if first:
                with gc_paused():
                    compiled = [self._compiled(group) for group in self.param_groups]
            else:
                compiled = [self._compiled(group) for group in self.param_groups]
            # every group's inputs first: a missing one must fail before any group has moved
            given = [self._inputs_of(index, group, closure, inputs, compiled[index])
                     if compiled[index].has_inputs else _NO_INPUTS
                     for index, group in enumerate(self.param_groups)]
            # collect and check every group, then reduce every group (no writes), then
            # the writes: an error before the first write leaves all as it was
            if first:
                with gc_paused():
                    stepping.run(self, given, compiled)
            else:
                stepping.run(self, given, compiled)
        finally:
            torch._C._set_grad_enabled(was)

    def _compiled(self, group: dict):
        """The group's compiled rule variant (built once per process and variant; the
        optimizer keeps the variants it ran, so a step skips the shared cache's lock)."""
        spec = self.spec_of(group)
        key = (spec.fn, spec.variant_of(group), self.skip_nonfinite,
               storage_options.options_of(spec, group))
        own = self.__dict__.get("_compiled_variants")
        if own is None:  # (not made in __init__: unpickled optimizers skip it)
            own = self._compiled_variants = {}
        found = own.get(key)
        if found is None:
            if len(own) >= 64:  # bounded: a group's flags flipped in a loop
                own.clear()
            found = own[key] = compile_rule(spec, *key[1:])
        return found

    def _inputs_of(self, index: int, group: dict, closure, inputs, compiled) -> dict:
        """{input name: {param: tensor}} for the group's rule (``given(...)``, layer stats)."""
        if not compiled.has_inputs:
            return {}
        decls = compiled.plan.states
        if inputs and compiled.packed_results & inputs.keys():  # floats, not packed bits
            decls = compiled.supplied.plan.states
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return {}
        found = gather(self, group, index, params, decls, closure, inputs,
                       compiled.collective_results)
        return {name: dict(zip(params, values)) for name, values in found.items()}

    # ---- hooks for subclasses (public: the step's stages call them) --------------------
    def step_hyperparameters(self, index: int, group: dict, params: list,
                             given: dict) -> dict:
        """The hyperparameter values group ``index``'s next step runs with: the group
        itself unless a subclass derives some per step (OASIS: its automatic step size as
        ``lr``). ``params``: the group's parameters that have a gradient (maybe none);
        ``given``: the rule's inputs, ``{name: {param: tensor}}``. Called in the collect
        stage, before anything is written: an error here leaves everything as it was.
        The returned mapping reaches ``step_committed`` unchanged."""
        return group

    def step_committed(self, index: int, group: dict, hyper: dict, skipped: bool) -> None:
        """Called once group ``index``'s step was applied (or skipped for a non-finite
        gradient, ``skipped``), with the values ``step_hyperparameters`` returned: where a
        subclass records per-step values of its own (nothing by default)."""

    def _matrix_stage(self, compiled, params, grads, states, scalars, reduced) -> list:
        """The plan's matrix stage (torch: BLAS / cuBLAS) for a bucket: per parameter, its
        outputs in ``plan.matrix_stages[0].outputs`` order (see ``stepping.matrix``)."""
        torch_launcher = compiled.launcher(BACKENDS["torch"])
        return torch_launcher.matrix(0, params, grads, states, scalars, reduced)

    # ---- hooks a subclass may extend (calling super()) ---------------------------------
    def launcher_for(self, compiled, device, dtype):
        """The launcher for a bucket of ``dtype`` tensors on ``device`` (looked up once per
        rule variant, device and dtype). A subclass may wrap what this returns (SparseAdam
        stages sparse gradients through ``runtime/lazy_sparse.py``)."""
        cache = self.__dict__.get("_launcher_cache")
        if cache is None:  # (not made in __init__: unpickled optimizers skip it)
            cache = self._launcher_cache = {}
        key = (compiled, device, dtype, self.backend)
        found = cache.get(key)
        if found is None:  # strided and complex parameters are staged (runtime/staging.py)
            backend, launcher = bucket_launcher(self.backend, compiled, device,
                                                staging.kernel_dtype(dtype))
            found = cache[key] = staging.wrap(
                launcher, reduces=bool(compiled.plan.reductions),
                strided_tensors=backend.capabilities.strided_tensors)
        return found

    def check_parameter(self, p, labels, j: int, compiled) -> None:
        """A bucket's parameter ``j`` and its gradient as the kernels need them;
        ``labels[j]`` names it ("parameter 1 of group 0"). Sparse gradients (where the rule
        takes them) and complex parameters are staged for the kernels (runtime/staging).
        Runs in the step's check stage, before any kernel; a subclass may add refusals
        (Adagrad: sparse gradients with weight decay; SparseAdam: dense ones)."""
        g = p.grad
        fused = self.param_groups[labels.group].get("fused")
        if not (g.is_sparse or p.is_complex() or fused or g.shape != p.shape
                or g.dtype != p.dtype or g.device != p.device
                or (compiled.plan.matrix_stages and p.dim() < 2)):
            return  # the common case, checked in ~1 us
        refuse_parameter(self, p, labels[j], compiled, fused)

    # ---- layer statistics -------------------------------------------------------------
    def attach(self, model: torch.nn.Module) -> LayerStats:
        """Record the layer inputs and output gradients that ``layer_input()`` and
        ``layer_output_grad()`` read (K-FAC, MKOR, AdaFisher...); returns the hooks' owner
        (``.remove()`` detaches them)."""
        if getattr(self, "layer_stats", None) is not None:
            self.layer_stats.remove()
        self.layer_stats = LayerStats(model)
        return self.layer_stats

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """torch's layout; a group's ``"rule"`` is saved by name (see ``checkpoint.save``)."""
        return checkpoint.save(self, super().state_dict())

    def load_state_dict(self, state_dict: dict) -> None:
        """All or nothing: the whole dict is checked first (see ``checkpoint.load``)."""
        checkpoint.load(self, state_dict, super().load_state_dict)

    # ---- copies (deepcopy, pickle) -----------------------------------------------------
    def __getstate__(self) -> dict:
        return get_state(self)

    def __setstate__(self, state: dict) -> None:
        had_flag = "differentiable" in state.get("defaults", {})
        super().__setstate__(state)  # torch: hooks, the patched step, defaults
        if not had_flag:  # torch adds it; a class without the flag (Muon) must not grow it
            self.defaults.pop("differentiable", None)
        restore_spec(self)

    def __repr__(self) -> str:
        return super().__repr__().replace(type(self).__name__ + " (",
                                          f"{type(self).__name__}[{self.spec.name}] (", 1)
