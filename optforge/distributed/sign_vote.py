"""The step of an optimizer whose workers exchange sign vectors instead of gradients.

Each rank keeps its own states (momentum) and steps on its *own* gradients: these
optimizers replace DDP's gradient all-reduce, they do not follow it (plain per-rank
models, or DDP with every backward under ``no_sync()``; docs/distributed.md). A step:

1. the subclass's ``signal(group, p, state)``: the float32 values whose signs this rank
   votes with (Lion: b1 m + (1 - b1) g), for every parameter with a gradient, in
   param-group order, concatenated into one flat vector;
2. ``exchange_signs``: one all-gather on the optimizer's process group of the packed
   bits (1 bit per element) behind a few header bytes (a NaN/Inf flag, which
   parameters have gradients) that every rank checks before anything is written;
   aggregated by majority vote or by averaging. The sizes are checked by one small
   all-reduce on the first step (``check_sizes``) and after the param groups change;
3. the rule's fused kernel (any backend) reads the aggregate through ``given("vote")``
   and writes the parameter and its states, as every catalogue rule does.

Every rank aggregates the same gathered bytes, so ranks that start from the same
parameters stay identical bit for bit without any further broadcast.
"""
from __future__ import annotations

import torch

from ..runtime.optimizer import SKIP_COUNTER, Optimizer
from .sign_comm import AGGREGATIONS, NonFiniteSignsError, check_sizes, exchange_signs

VOTE = "vote"  # the given(...) input the rules read


def _is_dtensor(t) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without DTensor cannot have one
        return False
    return isinstance(t, DTensor)


class SignVoteOptimizer(Optimizer):
    """Base of DistributedLion and SignumMV: subclasses set ``rule`` and ``signal``; a
    catalogue entry lists it before ``CatalogueOptimizer`` (the distributed layer sits
    below the catalogue: ``class DistributedLion(SignVoteOptimizer, CatalogueOptimizer)``).

    ``aggregation``: ``"vote"`` (majority: sign of the sum of signs) or ``"average"``
    (mean of the signs). ``process_group``: the group whose ranks vote (default: WORLD,
    looked up at each step, so the optimizer may be built before
    ``init_process_group``).
    """

    def __init__(self, params, *args, aggregation: str = "vote", process_group=None,
                 **kwargs):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"{type(self).__name__}: aggregation={aggregation!r}; expected "
                             f"one of {AGGREGATIONS}")
        self.aggregation = aggregation
        self.process_group = process_group
        super().__init__(params, *args, **kwargs)

    def signal(self, group: dict, p: torch.Tensor, state: dict, out: torch.Tensor) -> None:
        """Write into ``out`` (float32, p's shape) the values whose signs this rank sends."""
        raise NotImplementedError

    def step(self, closure=None, inputs=None):
        """One step: exchange sign vectors, then the fused update; returns the closure's loss.

        ``inputs={"vote": {param: tensor}}`` supplies the aggregate instead (no
        communication): a simulation of N workers in one process, or a transport of
        your own.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if inputs is None or VOTE not in inputs:
            try:
                votes = self._exchange()
            except NonFiniteSignsError:
                if not self.skip_nonfinite:
                    raise
                for group in self.param_groups:  # every rank skips, as the flag is global
                    group[SKIP_COUNTER] = group.get(SKIP_COUNTER, 0) + 1
                return loss
            inputs = {**(inputs or {}), VOTE: votes}
        super().step(None, inputs=inputs)
        return loss

    @torch.no_grad()
    def local_signals(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(every parameter of the optimizer in order, their signals in one flat float32
        vector, which of them have a gradient). A parameter without a gradient sends
        zeros, so the exchanged size does not depend on which gradients exist: the
        ranks compare ``present`` instead, inside the same collective."""
        params = [p for group in self.param_groups for p in group["params"]]
        groups = [group for group in self.param_groups for _ in group["params"]]
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.bool)
        for k, p in enumerate(params):
            if _is_dtensor(p) or _is_dtensor(p.grad):
                raise TypeError(
                    f"{type(self).__name__}: parameter {k} (in param-group order) is a "
                    "DTensor (FSDP2 / tensor parallel); sign-vote optimizers replace the "
                    "gradient all-reduce of data parallelism and step whole, replicated "
                    "parameters (plain per-rank models or DDP with no_sync())")
            if p.grad is not None and p.grad.shape != p.shape:
                raise RuntimeError(f"{type(self).__name__}: parameter {k}: gradient "
                                   f"{tuple(p.grad.shape)} does not match the parameter "
                                   f"{tuple(p.shape)}")
        devices = {p.device for p in params}
        if len(devices) > 1:
            raise RuntimeError(f"{type(self).__name__}: parameters on several devices "
                               f"({sorted(map(str, devices))}); one optimizer exchanges one "
                               "flat vector, so give each device its own optimizer")
        # one buffer written in place: no per-parameter temporaries to concatenate
        flat = torch.empty(sum(p.numel() for p in params), dtype=torch.float32,
                           device=params[0].device if params else None)
        at = 0
        for p, group in zip(params, groups):
            out = flat[at:at + p.numel()].view(p.shape)
            if p.grad is None:
                out.zero_()
            else:
                self.signal(group, p, self.state.get(p, {}), out)
            at += p.numel()
        return params, flat, present

    def _exchange(self) -> dict:
        params, flat, present = self.local_signals()
        sizes = (flat.numel(), len(params))
        if getattr(self, "_agreed_sizes", None) != sizes:  # first step, or new param groups
            check_sizes(*sizes, self.process_group, flat.device)
            self._agreed_sizes = sizes
        nonfinite = bool(flat.numel()) and not bool(torch.isfinite(flat).all())
        agg = exchange_signs(flat, self.aggregation, self.process_group, nonfinite, present)
        votes, at = {}, 0
        for p in params:
            if p.grad is not None:
                votes[p] = agg[at:at + p.numel()].view(p.shape)
            at += p.numel()
        return votes


def group_betas(group: dict, key: str = "betas") -> tuple[float, ...]:
    """A param group's beta tuple as Python floats (tensors allowed, as torch allows)."""
    return tuple(float(b) for b in group[key])
