"""Stochastic rounding's plan pass and its random stream.

``mark_stochastic`` marks the stores the storage options round stochastically
(``TensorRef.rounding``) and gives the plan the scalars their noise needs; which marked
stores really round (the 16-bit ones, per backend) is ``abi.roundings``'s answer.

The generator is ONE counter-based stream, spelled identically by every backend
(``kernels/numba/philox.py``, ``kernels/philox_torch.py``, the triton helpers): the
noise of element ``i`` of tensor ``tid`` (its index in the bucket of one launch) written
to slot ``salt`` (the tensor's position in ``["p", *plan.states]``) is the low 16 bits of
word ``i % 4`` of Philox-4x32-10 with key ``(seed, tid)`` and counter
``(i // 4 mod 2**32, i // 4 div 2**32, step, salt)``. ``seed`` is drawn on the host from
(optimizer seed, group, step) as the random scalar ``sr_seed`` (24 bits: kernels receive
scalars as float32, exact below 2**24), ``step`` is the step count: the same seed, params
and gradients give the same bits on every backend, and a resumed run continues the
stream. Stores into float32 round exactly, so a mark on them changes nothing.
"""
from __future__ import annotations

from dataclasses import replace

from ..dsl.randomness import RandomSymbol
from ..dsl.symbols import StepSymbol
from .errors import CompileError
from .plan import KernelPlan, Rounding, ScalarTemp, StateKind
from .storage import StorageOptions

SEED = "sr_seed"  # the random scalar and the kernel argument holding the stream's seed
STEP = "sr_step"  # the kernel argument holding the step count
SEED_DISTRIBUTION = "seed24"


def salt(plan: KernelPlan, name: str) -> int:
    """The stream of tensor ``name``: its position in ``["p", *plan.states]``."""
    return (["p", *plan.states]).index(name)


def mark_stochastic(plan: KernelPlan, options: StorageOptions) -> KernelPlan:
    """``plan`` (and its pre-stage plan) with the stores ``options`` round stochastically
    marked, and the seed and step passed to its kernels; unchanged when there are none."""
    wanted = set()
    if options.rounding == Rounding.STOCHASTIC:
        wanted |= set(plan.states_of(StateKind.STATE))
    if options.param_rounding == Rounding.STOCHASTIC:
        wanted.add("p")
    pre = mark_stochastic(plan.pre_plan, options) if plan.pre_plan is not None else None
    if pre is not plan.pre_plan:
        plan = replace(plan, pre_plan=pre)
    if not any(r.name in wanted for r, _ in plan.stores):
        if pre is not None and SEED in pre.randoms:  # the runtime draws the main plan's
            plan = replace(plan, randoms={**plan.randoms, SEED: SEED_DISTRIBUTION})
        return plan
    if SEED in plan.randoms:
        raise CompileError(f"rule {plan.rule_name!r}: a random scalar named {SEED!r} "
                           "collides with stochastic rounding's seed")
    seed, step = RandomSymbol(SEED, real=True), StepSymbol("t", positive=True)
    args = [ScalarTemp(SEED, real=True), ScalarTemp(STEP, real=True)]
    return replace(
        plan,
        stores=[(replace(r, rounding=Rounding.STOCHASTIC) if r.name in wanted else r, e)
                for r, e in plan.stores],
        randoms={**plan.randoms, SEED: SEED_DISTRIBUTION},
        prologue_inputs=[*plan.prologue_inputs[:-1], seed, plan.prologue_inputs[-1]],
        prologue=[*plan.prologue, (args[0], seed), (args[1], step)],
        scalar_args=[*plan.scalar_args, *args],
    )
