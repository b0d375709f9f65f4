"""Runs a plan's generated Triton kernel: one launch per bucket, whatever its tensor count.

The launcher interface is the torch launcher's: ``launcher(params, grads, states,
scalars)`` with ``states`` one list per state name (plan order) aligned with
``params``; params of one call share device, dtype and step. Hyperparameters arrive
in ``scalars`` as kernel arguments, so a new lr reuses the compiled kernel.

Per parameter dtype one kernel is generated (storage dtypes are part of its source).
Per bucket shape (device, sizes) a Layout caches the block map and address table;
the launch config comes from the autotuner (tuned on scratch copies) or a heuristic.

Multi-stage plans: ``reduce(stage, ...)`` launches the stage's kernel over tiles of the
bucket's tensors (``reduce.py``) and returns each tensor's partials, as the torch
launcher does; ``__call__(..., reduced=...)`` passes the finished results to the
elementwise kernel (a scalar table and row/column vector addresses). Their configs are
fixed (configs.reduce_config): reduce tiles are never tuned (the bits must not depend on
a timing).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

from ...compiler.errors import CompileError
from ...compiler.plan import KernelPlan, Rounding
from ...compiler.abi import (launcher_seeded, result_layout, roundings, storage_dtypes,
                             tensor_refs)
from ...compiler.codegen import source as generated_source
from ...compiler.scope_use import stage_uses_rows_or_cols
from ..cache import load_module
from . import configs
from .available import check_interpreter_consistent, interpreter_on
from .configs import FP_FUSION, Config
from .layout import Layout, addresses_of, align_groups, check_roles, numels_of, to_device
from .reduce import StageLayout, result_tables

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                "bfloat16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}
MAX_LAYOUTS = 64


@dataclass
class Kernel:
    """One generated kernel: for one parameter dtype and choice of stochastic tensors."""

    fn: object
    source: str
    digest: str
    dtypes: dict[str, str]
    stochastic: tuple[str, ...]  # the seed arguments, in kernel order
    reduce_fns: tuple = ()  # one kernel per reduce stage (multi-stage plans)


class TritonLauncher:
    """``TritonLauncher(plan, stochastic=("p",), tuner=None)``.

    ``stochastic`` names written tensors rounded stochastically when stored as
    bfloat16 (others round to nearest even); a fresh seed per call is drawn from
    ``generator`` (default: torch's global CPU generator, so ``torch.manual_seed``
    makes runs reproducible). ``tuner`` defaults to the process-wide autotuner.
    """

    # check() validates dtype, device and size of every tensor the kernels touch
    checks_tensors = True

    def __init__(self, plan: KernelPlan, stochastic=(), tuner=None,
                 generator: torch.Generator | None = None):
        self.plan = plan
        self.refs = tensor_refs(plan)
        written = {r.name for r, _ in plan.stores}
        unknown = sorted(set(stochastic) - written)
        if unknown:
            raise CompileError(f"rule {plan.rule_name!r}: stochastic rounding asked for "
                               f"{unknown}, which the rule does not write "
                               f"(written: {sorted(written)})")
        self.stochastic = frozenset(stochastic)
        self.generator = generator
        self._tuner = tuner
        self._kernels: dict[torch.dtype, Kernel] = {}
        self._layouts: dict[tuple, Layout] = {}
        self._configs: dict[tuple, Config] = {}
        self._stage_layouts: dict[tuple, StageLayout] = {}
        self._checked = None  # (kernel, addresses, sizes) the last check passed
        self._flat = [not stage_uses_rows_or_cols(plan, k) for k in range(len(plan.reduce_stages))]
        self._result_pos = result_layout(plan, shapes_known=False)
        self._kinds = [r.result_kind for r in plan.reductions]
        self.source = self.kernel(torch.float32).source  # for `optforge show`

    @property
    def tuner(self):
        if self._tuner is None:
            from .autotune import default_tuner
            self._tuner = default_tuner()
        return self._tuner

    def kernel(self, param_dtype: torch.dtype) -> Kernel:
        found = self._kernels.get(param_dtype)
        if found is None:
            if param_dtype not in DTYPE_NAMES:
                raise CompileError(f"rule {self.plan.rule_name!r}: the triton backend cannot "
                                   f"run {param_dtype} parameters (supported: "
                                   f"{sorted(TORCH_DTYPES)})")
            name = DTYPE_NAMES[param_dtype]
            dtypes = storage_dtypes(self.plan, name, "triton")
            sr = tuple(sorted(n for n in self.stochastic if dtypes[n] == "bfloat16"))
            source = generated_source(self.plan, "triton", param_dtype=name, stochastic=sr,
                                      interpreted=interpreter_on())
            rounding = roundings(self.plan, dtypes, sr)
            if Rounding.STOCHASTIC in rounding.values():  # tl.philox inside the kernel
                check_interpreter_consistent()
            module = load_module(source, "triton")
            found = self._kernels[param_dtype] = Kernel(
                module.kernel, source, hashlib.sha256(source.encode()).hexdigest()[:16],
                dtypes, launcher_seeded(self.plan, rounding),
                getattr(module, "REDUCE_STAGES", ()))
        return found

    # ---- one step ---------------------------------------------------------------------
    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        """``reduced``: each parameter's finished reductions (multi-stage plans)."""
        if not params:
            return
        kern, layout, table, config, comm = self._prepare(params, grads, states, scalars)
        extra = ()
        if self.plan.reduce_stages:
            stage = self._stage_layout(params, False)
            extra = (stage.real_tab,) + self._tables(reduced, stage, layout.device)
        seeds = [self._seed() for _ in kern.stochastic]
        self._launch(kern, layout, table, layout.groups, scalars, seeds + list(comm), config,
                     extra)

    def reduce(self, stage: int, params, grads, states, scalars, reduced,
               prepared=None) -> list[tuple]:
        """Reduce stage ``stage``: each tensor's partial reductions (nothing is written);
        ``reduced`` holds each tensor's finished results of the earlier stages."""
        kern, layout, table, _, _ = self._prepare(params, grads, states, scalars,
                                                  reducing=True)
        slayout = self._stage_layout(params, self._flat[stage])
        rs, raddr = self._tables(reduced, slayout, layout.device)
        guard = (torch.cuda.device(layout.device) if layout.device.type == "cuda"
                 else contextlib.nullcontext())
        with guard:
            return slayout.run(kern.reduce_fns[stage], self.plan.reduce_stages[stage].reductions,
                               (table, len(layout.numels), rs, raddr),
                               [float(s) for s in scalars],
                               configs.reduce_config(layout.device, layout.numels).num_warps,
                               layout.aligned)

    def _tables(self, reduced, slayout: StageLayout, device):
        return result_tables(self.plan, reduced, slayout, *self._result_pos, self._kinds, device)

    def _stage_layout(self, params, flat: bool) -> StageLayout:
        """Tile groups of one bucket shape for a flat or (rows, row length) stage; the tile
        size is configs.reduce_config's (never tuned: the bits must not depend on it)."""
        device = params[0].device
        shapes = tuple(tuple(p.shape) for p in params)
        block = configs.reduce_config(device, numels_of(params)).block_size
        key = (device, shapes, flat, block)
        found = self._stage_layouts.get(key)
        if found is None:
            if len(self._stage_layouts) >= MAX_LAYOUTS:
                self._stage_layouts.clear()
            found = self._stage_layouts[key] = StageLayout(shapes, flat, block, device)
        return found

    def check(self, params, grads, states, labels=None) -> None:
        """The optimizer's check phase, before any kernel of the step: raise naming the
        tensor (``labels[j]``: "parameter 3 of group 1") if this bucket cannot run.
        Buffers a matrix stage has not made yet (None) are checked at launch."""
        if not params:
            return
        kern = self.kernel(params[0].dtype)
        by_role = {"p": params, "g": grads, **dict(zip(self.plan.states, states))}
        roles = [r for r in self.refs if not any(t is None for t in by_role[r.name])]
        try:
            key = (kern.digest, addresses_of([by_role[r.name] for r in roles]),
                   numels_of(params))
        except RuntimeError:  # no data pointer (a wrapper subclass): check_bucket names it
            key = None
        if key is not None and key == self._checked:  # checked again when a tensor changes
            return
        check_roles(kern.dtypes, roles, by_role, params, labels)
        self._checked = key

    def _prepare(self, params, grads, states, scalars, reducing: bool = False):
        """(kernel, layout, address table, config) of a bucket, its tensors checked."""
        device, dtype = params[0].device, params[0].dtype
        kern = self.kernel(dtype)
        by_role = {"p": params, "g": grads, **dict(zip(self.plan.states, states))}
        # a reduce stage runs before the matrix stage has made its buffers (None): they
        # hold the parameters' addresses there, which no reduce kernel reads (a reduction
        # of a matrix operation's result is refused by the DSL)
        made = [r for r in self.refs if not any(t is None for t in by_role[r.name])]
        if len(made) != len(self.refs) and not reducing:  # the elementwise kernel reads them
            raise RuntimeError(f"rule {self.plan.rule_name!r}: the matrix stage's buffers "
                               "are missing at the elementwise launch")
        rows = [by_role[r.name] if r in made else params for r in self.refs]
        numels = numels_of(params)
        layout = self._layouts.get((device, numels))
        if layout is None:
            if len(self._layouts) >= MAX_LAYOUTS:  # shapes that keep changing: start over
                self._layouts.clear()
            layout = self._layouts[(device, numels)] = Layout(numels, device)
        addresses = addresses_of(rows)
        # checked whenever a tensor changes (not every step: ~1 us per tensor adds up to a
        # noticeable share of a 300-tensor step); packed sign buffers on every call (a
        # gathered view's worker count and row stride are kernel arguments, not addresses)
        comm = check_roles(kern.dtypes, made, by_role, params, None,
                           plain=not layout.known(addresses))
        config = self._config(kern, layout, rows, scalars, comm)
        return kern, layout, layout.address_table(addresses), config, comm

    def _seed(self) -> int:
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))

    def _launch(self, kern: Kernel, layout: Layout, table: torch.Tensor, groups, scalars,
                seeds, config: Config, extra: tuple = ()) -> None:
        """One launch per alignment group (layout.align_groups): usually one."""
        guard = (torch.cuda.device(layout.device) if layout.device.type == "cuda"
                 else contextlib.nullcontext())
        for members, align in groups:
            blocks = layout.block_map(config.block_size, members)
            if blocks.n_programs == 0:  # every tensor is empty
                continue
            with guard:
                kern.fn[(blocks.n_programs,)](
                    table, len(layout.numels), blocks.numel, blocks.tensor, blocks.start,
                    *extra, *[float(s) for s in scalars], *seeds,
                    BLOCK_SIZE=config.block_size, ALIGN=align, num_warps=config.num_warps,
                    enable_fp_fusion=FP_FUSION)

    # ---- launch configuration ---------------------------------------------------------
    def _config(self, kern: Kernel, layout: Layout, rows, scalars, comm=()) -> Config:
        key = (kern.digest, layout.device, layout.numels)
        found = self._configs.get(key)
        if found is not None:
            return found
        from .autotune import TuneKey, device_signature, size_bucket
        import triton

        name, capability = device_signature(layout.device)
        space = configs.candidates(layout.device, layout.numels)
        if self.plan.reduce_stages or not self._scratch_fits(layout, rows):
            # multi-stage plans: the elementwise kernel also reads result tables, which
            # the scratch runner does not build; they run the heuristic config
            space = []  # no room for scratch copies: the heuristic, never live buffers
        tune_key = TuneKey(name, capability, triton.__version__, kern.digest,
                           ",".join(f"{k}:{v}" for k, v in kern.dtypes.items()),
                           size_bucket(layout.numels))
        chosen = self.tuner.choose(
            tune_key, layout.device,
            [c.as_dict() for c in space],
            self._scratch_runner(kern, layout, rows, scalars, comm),
            configs.heuristic(layout.device, layout.numels).as_dict(),
            functools.partial(configs.valid, device=layout.device))
        found = self._configs[key] = Config.from_dict(chosen)
        return found

    def config_for(self, param_dtype: torch.dtype, device: torch.device,
                   numels: tuple[int, ...]) -> Config:
        """The config used (after a first call) for such a bucket."""
        return self._configs[(self.kernel(param_dtype).digest, device, numels)]

    def _scratch_fits(self, layout: Layout, rows) -> bool:
        if layout.device.type != "cuda":
            return True
        written = {r.name for r, _ in self.plan.stores}
        need = sum(t.numel() * t.element_size() for ref, row in zip(self.refs, rows)
                   if ref.name in written for t in row)
        free, _ = torch.cuda.mem_get_info(layout.device)
        if need < 0.8 * free:
            return True
        import warnings
        warnings.warn(f"optforge: not tuning {self.plan.rule_name} on {layout.device}: its "
                      f"scratch copies need {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are "
                      "free; using the heuristic config", RuntimeWarning, stacklevel=4)
        return False

    def _scratch_runner(self, kern: Kernel, layout: Layout, rows, scalars,
                        comm=()) -> Callable:
        """``run(config)`` on copies of every written tensor: timing trials never touch the
        live params and states (read-only tensors such as grads are shared)."""
        written = {r.name for r, _ in self.plan.stores}
        scratch: list | None = None

        def run(config: dict) -> None:
            nonlocal scratch
            if scratch is None:  # allocated only if a search actually runs
                scratch = [[t.clone() for t in row] if ref.name in written else row
                            for ref, row in zip(self.refs, rows)]
                addresses = addresses_of(scratch)
                run.table = to_device(torch.tensor(addresses, dtype=torch.int64),
                                      layout.device)
                run.groups = align_groups(addresses, len(layout.numels))
            self._launch(kern, layout, run.table, run.groups, scalars,
                         [0] * len(kern.stochastic) + list(comm), Config.from_dict(config))
        return run
