"""Sign bits as the generated kernels write and read them: the ABI of the 1-bit collectives.

``allreduce(sign(c), bits=1)`` and ``majority_vote(sign(c))`` (dsl/collectives.py) send
one bit per element. The kernels pack and count those bits themselves, on every backend;
the runtime only moves the bytes (runtime/collective_stage.py):

* the pre-stage stores the value a worker sends into its ``send_<name>`` buffer, of
  storage dtype ``sign_bits``: per parameter of n elements ``segment_size(n) = 1 +
  ceil(n / 8)`` bytes (uint8). Byte 0 is the non-finite flag: the kernel sets it to 1
  where a value is NaN (the runtime zeroes it first; the kernel never clears it). Bit i
  of byte 1 + k (least significant bit first) holds element 8 k + i of the parameter in
  the order the kernel walks it: row-major for a contiguous parameter (and for any the
  runtime stages as a contiguous copy); a dense permuted one that a backend steps in
  place (numba, channels_last) in memory order, the same on every rank that runs the
  same backend on the same layout. Set where the value is >= 0, so an exact 0 travels as +1 (a bit has no
  third value) and NaN as a clear bit (flagged, so never counted). The last byte's unused
  bits are clear;
* the runtime all-gathers every worker's segments; the elementwise stage reads a
  parameter's as a ``sign_votes`` buffer: a (workers, segment) uint8 view of the gathered
  bytes whose rows are ``stride`` bytes apart (the kernels take ``world_<name>`` and
  ``stride_<name>`` as integer arguments). Per element it counts the set bits over the
  rows: ``total = 2 * count - workers``, the sum of the +-1 votes (an exact integer in
  float32), then ``sum`` -> total, ``mean`` -> total / workers (one IEEE float32
  division), ``vote`` -> sign(total) (0 on a tie). That is computed in float32 whatever
  the compute type, as the float32 result buffer it replaces was.

A result a user supplies (``step(inputs={name: ...})``, any float values) cannot be
bits: the main stage then runs ``float_results(plan)``, the same plan reading a float32
buffer. A plan with reduce stages reads float32 results too (``lower`` decides: its
multi-stage kernels have no packed loads); the runtime then counts the votes with the
torch backend's helper (kernels/sign_bits_torch.py).
"""
from __future__ import annotations

from dataclasses import replace

from .plan import KernelPlan, StorageDtype

SIGN_BITS = StorageDtype.SIGN_BITS
SIGN_VOTES = StorageDtype.SIGN_VOTES
PACKED = (SIGN_BITS, SIGN_VOTES)


def packed_size(numel: int) -> int:
    """Bytes that ``numel`` sign bits take (the last byte padded with clear bits)."""
    return (numel + 7) // 8


def segment_size(numel: int) -> int:
    """A parameter's bytes in a ``sign_bits`` buffer: the flag byte, then its bits."""
    return 1 + packed_size(numel)


def vote_ops(plan: KernelPlan) -> dict[str, str]:
    """``{result buffer: op}`` of the plan's collectives whose result it loads as packed
    bits (``sign_votes``), in load order: the kernels' ``world_`` / ``stride_`` pairs."""
    ops = {op.result: op.op for op in plan.collectives}
    return {r.name: ops[r.name] for r in plan.loads if r.dtype == SIGN_VOTES}


def packed_sends(plan: KernelPlan) -> list[str]:
    """The ``sign_bits`` buffers a (pre-stage) plan stores."""
    return [r.name for r, _ in plan.stores if r.dtype == SIGN_BITS]


def float_results(plan: KernelPlan) -> KernelPlan:
    """``plan`` reading its 1-bit collectives' results from float32 buffers (results a
    user supplies): the same math after the load, so the same bits for the same values."""
    if not vote_ops(plan):
        return plan

    def f32(ref):
        return replace(ref, dtype=StorageDtype.FLOAT32) if ref.dtype == SIGN_VOTES else ref
    return replace(plan, loads=[f32(r) for r in plan.loads],
                   states={n: replace(d, dtype=StorageDtype.FLOAT32)
                           if d.dtype == SIGN_VOTES else d for n, d in plan.states.items()})
