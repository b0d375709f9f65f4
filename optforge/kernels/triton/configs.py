"""The triton launcher's tuning space and its heuristic default.

What matters for the block-map scheme: BLOCK_SIZE (elements per program: larger
amortizes the per-program table reads and index math, smaller wastes fewer lanes on
each tensor's last partial block, which dominates for many small tensors) and
num_warps (elements per thread = BLOCK_SIZE / (32 * num_warps): >= 4 fp32 gives
128-bit vector accesses, more gives memory-level parallelism). The kernel has no
loop, so num_stages does not apply.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


# Every launch pins Triton's FMA contraction off (its default is on in Triton 3.9 and is
# announced to change in 3.10): a*b + c is then rounded twice, as torch's op-by-op
# reference and the interpreter (numpy) round it, so compiled results do not depend on
# the Triton version or on which products LLVM happens to contract. Cost: a multiply and
# an add where an FMA would do, in kernels that are memory-bound on the GPUs targeted.
FP_FUSION = False


@dataclass(frozen=True)
class Config:
    block_size: int
    num_warps: int

    def as_dict(self) -> dict:
        return {"BLOCK_SIZE": self.block_size, "num_warps": self.num_warps}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return cls(int(d["BLOCK_SIZE"]), int(d["num_warps"]))


# Elements per thread (BLOCK_SIZE / (32 * num_warps)) allowed on a GPU. Measured AOT for
# sm_90 (docs/gpu.md): at 32 the heaviest catalogue kernels run out of registers and
# spill (COCOB 500 B, AdamP 456 B of spill stores per thread); at 16 EXAdam spills 8 B
# and AdamP holds 208 registers; at 8 none spills. 4 float32 (or 8 bfloat16) per thread
# are one 128-bit access, so the space is 4..8 elements per thread.
MIN_PER_THREAD, MAX_PER_THREAD = 4, 8


def per_thread(c: Config) -> int:
    return c.block_size // (32 * c.num_warps)


def valid(d: dict, device: torch.device | None = None) -> bool:
    """A stored config this launcher can run (power-of-two sizes, sane warps) and, on a
    GPU, one that does not spill (see MAX_PER_THREAD): a cache file edited by hand or
    written by an older version cannot bring back a spilling config."""
    try:
        c = Config.from_dict(d)
    except (KeyError, TypeError, ValueError):
        return False
    pow2 = c.block_size > 0 and c.block_size & (c.block_size - 1) == 0
    ok = pow2 and 128 <= c.block_size <= 65536 and c.num_warps in (1, 2, 4, 8, 16, 32)
    if ok and device is not None and not _interpreted(device):
        ok = 1 <= per_thread(c) <= MAX_PER_THREAD
    return ok


def _interpreted(device: torch.device) -> bool:
    # the CPU only runs triton kernels under TRITON_INTERPRET=1
    return device.type != "cuda"


def candidates(device: torch.device, numels: tuple[int, ...]) -> list[Config]:
    if _interpreted(device):
        # the interpreter pays a fixed cost per operation and program: large blocks
        return [Config(4096, 4), Config(16384, 4), Config(65536, 4)]
    mean = sum(numels) / max(1, len(numels))
    blocks = (512, 1024, 2048, 4096) if mean < 65536 else (1024, 2048, 4096)
    space = [Config(b, w) for b in blocks for w in (4, 8, 16)]
    return [c for c in space if MIN_PER_THREAD <= per_thread(c) <= MAX_PER_THREAD]


# Reduce tiles on a GPU: 1024 elements, 4 warps (8 per thread). Fixed, never tuned (the
# bits must not depend on a timing); measured AOT: with 2048 elements over 8 warps,
# ptxas on sm_80 saved a register to the stack around LAMB's IEEE-division slow path.
REDUCE_GPU = Config(1024, 4)


def reduce_config(device: torch.device, numels: tuple[int, ...]) -> Config:
    """The tile size and warps of reduce kernels: the heuristic's under the interpreter."""
    return heuristic(device, numels) if _interpreted(device) else REDUCE_GPU


def heuristic(device: torch.device, numels: tuple[int, ...]) -> Config:
    """Used when tuning is off (OPTFORGE_AUTOTUNE=0) or not run on this device."""
    largest = max(numels, default=1)
    if _interpreted(device):
        # few programs (numpy work per lane is cheap next to the interpreter's cost per
        # operation): one per tensor up to 32768 elements; larger tensors get full
        # (unmasked) blocks too, so both kernel paths run in CPU tests
        return Config(min(32768, max(4096, 1 << (largest - 1).bit_length())), 4)
    mean = sum(numels) / max(1, len(numels))
    # 8 fp32 per thread (two 128-bit accesses) for large tensors; small tensors
    # waste fewer lanes with 1024-element blocks
    return Config(2048, 8) if mean >= 16384 else Config(1024, 4)
