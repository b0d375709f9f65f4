"""optforge.Optimizer: a compiled rule as a real ``torch.optim.Optimizer``.

Hyperparameters live in ``param_groups`` like torch's, so schedulers, per-group
settings and checkpoints work unchanged; they reach the kernels as run-time
scalars, so changing them never recompiles. State keys follow torch (``step``
as a float32 tensor, ``exp_avg``...), so torch checkpoints load.
"""
from __future__ import annotations

import math
import numbers

import torch

from ..compiler.errors import CompileError
from ..dsl.spec import RuleSpec
from .backends import BACKENDS, BackendError, check_backend_name, select
from .compiled import compile_rule
from .gc_pause import gc_paused
from .inputs import gather
from .module_stats import LayerStats
from .routing import RULE_KEY, resolve_rule
from . import stepping
from .state import check_loaded
from .stepping import SKIP_COUNTER  # noqa: F401 - re-exported (param_groups key)




def _scalar(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex():
        return float(v)
    return None


class Optimizer(torch.optim.Optimizer):
    """``Optimizer(params, rule, backend="auto", **hyperparameters)``.

    ``rule`` is a rule function (or ``RuleSpec``); its keyword defaults are the
    hyperparameters, overridable here and per param group.
    """

    def __init__(self, params, rule, *, backend: str = "auto", skip_nonfinite: bool = False,
                 seed: int = 0, **hyper):
        self.spec = rule if isinstance(rule, RuleSpec) else RuleSpec(rule)
        check_backend_name(backend)
        self.backend = backend
        # Count NaN/Inf gradient elements in the first reduce stage; a group that has any
        # skips its step, leaving params, states and step counts untouched.
        self.skip_nonfinite = bool(skip_nonfinite)
        # Random scalars (random_scalar in the DSL) are drawn from (seed, group, step, name).
        self.seed = int(seed)
        self._check_keys(hyper, "the constructor")
        defaults = {**self.spec.defaults, **hyper}
        self._check_values(defaults, "defaults")
        super().__init__(params, defaults)

    # ---- param groups -------------------------------------------------------------
    def spec_of(self, group: dict) -> RuleSpec:
        """The rule a param group runs: its ``"rule"`` entry, else the optimizer's."""
        if RULE_KEY not in group:
            return self.spec
        return resolve_rule(group[RULE_KEY], f"{type(self).__name__}: a param group")

    def _check_keys(self, group: dict, where: str) -> None:
        spec = self.spec_of(group)
        unknown = sorted(set(group) - set(spec.defaults) - {"params", SKIP_COUNTER, RULE_KEY})
        if unknown:
            raise TypeError(f"{type(self).__name__} ({spec.name}): unknown "
                            f"hyperparameter(s) {unknown} in {where}; known: "
                            f"{sorted(spec.defaults)}")

    def _check_values(self, group: dict, where: str) -> None:
        name = type(self).__name__
        for key, default in self.spec_of(group).defaults.items():
            value = group[key]
            if isinstance(default, bool):
                ok = isinstance(value, bool)
                expected = "a bool"
            elif isinstance(default, tuple):
                ok = (isinstance(value, (tuple, list)) and len(value) == len(default)
                      and all(_scalar(x) is not None and math.isfinite(_scalar(x))
                              for x in value))
                expected = f"a tuple of {len(default)} finite numbers"
            else:
                ok = _scalar(value) is not None and math.isfinite(_scalar(value))
                expected = "a finite number"
            if not ok:
                raise ValueError(f"{name}: hyperparameter {key!r} = {value!r} in {where}: "
                                 f"expected {expected}")

    def add_param_group(self, param_group: dict) -> None:
        self._check_keys(param_group, f"param group {len(self.param_groups)}")
        if RULE_KEY in param_group:  # that rule's defaults, not the optimizer's
            spec = self.spec_of(param_group)
            param_group = {**spec.defaults, **param_group}
            own = set(param_group)
            super().add_param_group(param_group)
            for key in set(self.param_groups[-1]) - own:
                del self.param_groups[-1][key]
        else:
            super().add_param_group(param_group)
        if getattr(self, "skip_nonfinite", False):
            self.param_groups[-1].setdefault(SKIP_COUNTER, 0)
        self._check_values(self.param_groups[-1], f"param group {len(self.param_groups) - 1}")
        spec = self.spec_of(self.param_groups[-1])  # DSL errors surface here, not at step 1
        with gc_paused():  # a SymPy build: many objects (see gc_pause)
            spec.build(spec.variant_of(self.param_groups[-1]))

    # ---- the step -----------------------------------------------------------------
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:  # a subclass's own step (MKOR, AdaHessian) is serialised
            cls.step = stepping.serialised(cls.step)  # too (the lock is re-entrant)

    @stepping.serialised  # concurrent calls from several threads: one after another
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
        with torch.no_grad():
            if first:
                with gc_paused():
                    for group in self.param_groups:
                        self._compiled(group)
            # every group's inputs first: a missing one must fail before any group has moved
            given = [self._inputs_of(index, group, closure, inputs)
                     for index, group in enumerate(self.param_groups)]
            with gc_paused(first):
                # collect and check every group, then reduce every group (no writes),
                # then apply: an error before the first write leaves everything as it was
                work = [self._step_group(index, group, given[index])
                        for index, group in enumerate(self.param_groups)]
                work = [w for w in work if w is not None]
                for w in work:
                    stepping.reduce(self, w)
                for w in work:
                    stepping.apply(self, w)
        self._stepped = True
        return loss

    def _compiled(self, group: dict):
        """The group's compiled rule variant (built once per process and variant)."""
        spec = self.spec_of(group)
        return compile_rule(spec, spec.variant_of(group), self.skip_nonfinite)

    def _inputs_of(self, index: int, group: dict, closure, inputs) -> dict:
        """{input name: {param: tensor}} for the group's rule (``given(...)``, layer stats)."""
        compiled = self._compiled(group)
        if not compiled.has_inputs:
            return {}
        decls = compiled.plan.states
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return {}
        found = gather(self, group, index, params, decls, closure, inputs)
        return {name: dict(zip(params, values)) for name, values in found.items()}

    def _step_group(self, index: int, group: dict, given: dict | None = None):
        """Collect and check one group's step (see runtime/stepping.py): its buckets and
        new states, every tensor checked; writes nothing. ``step()`` applies the returned
        work once every group has passed (None: no parameter has a gradient). Subclasses
        that adjust a group's step (OASIS) override this and add ``on_commit`` hooks."""
        work = stepping.collect(self, index, group, given or {})
        if work is not None:
            stepping.check(self, work)
        return work

    def _matrix_stage(self, compiled, params, grads, states, scalars, reduced) -> dict:
        """Run the plan's matrix stage (torch: BLAS / cuBLAS) for a bucket: fill the
        buffers the elementwise kernel reads into ``states``; return the matrix states'
        new values, written once the elementwise kernel has succeeded."""
        plan = compiled.plan  # (called only for plans with a matrix stage)
        names = list(plan.states)
        stage = plan.matrix_stages[0]
        torch_launcher = compiled.launcher(BACKENDS["torch"])
        results = torch_launcher.matrix(0, params, grads, states, scalars, reduced)
        new_matrices = {}
        for j, (name, _) in enumerate(stage.outputs):
            values = [r[j] for r in results]
            if plan.states[name].kind == "buffer":
                states[names.index(name)] = values
            else:
                new_matrices[name] = values
        return new_matrices

    def _launcher(self, compiled, device, dtype):
        """The bucket's launcher (looked up once per rule variant, device and dtype)."""
        cache = self.__dict__.get("_launcher_cache")
        if cache is None:  # (not made in __init__: unpickled optimizers skip it)
            cache = self._launcher_cache = {}
        key = (compiled, device, dtype, self.backend)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._find_launcher(compiled, device, dtype)
        return found

    def _find_launcher(self, compiled, device, dtype):
        """The bucket's launcher; multi-stage rules need a backend with a reduce stage."""
        backend = select(self.backend, device, dtype)
        if not compiled.plan.reductions:
            return compiled.launcher(backend)
        try:
            launcher = compiled.launcher(backend)
        except CompileError:  # a printer that refuses reduce stages
            launcher = None
        if not hasattr(launcher, "reduce"):
            if self.backend != "auto":
                raise BackendError(f"backend {backend.name!r} cannot run rule "
                                   f"{compiled.spec.name!r}: it has no reduce stage yet (the rule "
                                   "uses norm/sum/mean/amax/count); use backend='torch'")
            launcher = compiled.launcher(BACKENDS["torch"])
        return launcher

    def _check_param(self, p, labels, j: int, compiled) -> None:
        """A bucket's parameter ``j`` and its gradient as the kernels need them;
        ``labels[j]`` names it ("parameter 1 of group 0")."""
        g = p.grad
        if not (g.is_sparse or p.is_complex() or g.shape != p.shape or g.dtype != p.dtype
                or g.device != p.device or (compiled.plan.matrix_stages and p.dim() < 2)):
            return  # the common case, checked in ~1 us
        label = labels[j]
        where = f"{type(self).__name__}: {label}"
        if g.is_sparse:
            raise RuntimeError(f"{where} has a sparse gradient; optforge does not support "
                               "sparse gradients (use torch.optim.SparseAdam or dense grads)")
        if p.is_complex():
            raise RuntimeError(f"{where} is complex ({p.dtype}); optforge supports real "
                               "floating-point parameters (view it with torch.view_as_real)")
        if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            raise RuntimeError(f"{where}: gradient {tuple(g.shape)} {g.dtype} on "
                               f"{g.device} does not match the parameter "
                               f"{tuple(p.shape)} {p.dtype} on {p.device}")
        raise ValueError(f"{type(self).__name__} ({compiled.spec.name}): {label} has "
                         f"shape {tuple(p.shape)}; the rule uses matrix operations, which "
                         "need parameters with at least 2 dimensions (give biases and norms "
                         "an elementwise rule: a param group with \"rule\": "
                         "optforge.AdamW, see optforge.split_matrix_params)")

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
    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for gi, group in enumerate(self.param_groups):
            spec = self.spec_of(group)
            for key, default in spec.defaults.items():  # e.g. a checkpoint of another rule
                group.setdefault(key, default)
            self._check_values(group, f"loaded param group {gi}")
            decls = compile_rule(spec, spec.variant_of(group)).plan.states
            for i, p in enumerate(group["params"]):
                if p in self.state:
                    check_loaded(decls, p, self.state[p],
                                 f"{type(self).__name__}: parameter {i} of group {gi}")

    def __repr__(self) -> str:
        return super().__repr__().replace(type(self).__name__ + " (",
                                          f"{type(self).__name__}[{self.spec.name}] (", 1)
