"""What a plan says about the collectives of a rule (see passes/split_collectives.py).

A ``CollectiveOp`` is one reduction across the data-parallel workers: the pre-stage
writes its argument into the buffer ``send``, the runtime (runtime/collective_stage.py)
sends that over the optimizer's process group and hands over the buffer ``result``,
which the elementwise stage reads as the ``CommResult`` symbol of the same name. Both
are float32 for ``bits=32``; for ``bits=1`` they hold packed sign bits that the
generated kernels write and count (compiler/packed_signs.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..dsl.symbols import TensorSymbol


class CommResult(TensorSymbol):
    """A collective's per-element result, read from a buffer the runtime fills."""


@dataclass(frozen=True)
class CollectiveOp:
    result: str  # the buffer the elementwise stage reads (the DSL's name=, e.g. "vote")
    send: str  # the buffer the pre-stage writes: the value every worker contributes
    op: str  # "sum", "mean" or "vote" (sign of the sum)
    bits: int  # 32: float32 values; 1: one bit per element (the value is a sign)

    def describe(self) -> str:
        wire = "fp32 all-reduce" if self.bits == 32 else "1-bit packed all-gather"
        return f"  {self.result} <- {self.op} over workers of {self.send} ({wire})"
