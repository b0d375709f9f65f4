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


@dataclass(frozen=True)
class Config:
    block_size: int
    num_warps: int

    def as_dict(self) -> dict:
        return {"BLOCK_SIZE": self.block_size, "num_warps": self.num_warps}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return cls(int(d["BLOCK_SIZE"]), int(d["num_warps"]))


def valid(d: dict) -> bool:
    """A stored config this launcher can run (power-of-two sizes, sane warps)."""
    try:
        c = Config.from_dict(d)
    except (KeyError, TypeError, ValueError):
        return False
    pow2 = c.block_size > 0 and c.block_size & (c.block_size - 1) == 0
    return pow2 and 128 <= c.block_size <= 65536 and c.num_warps in (1, 2, 4, 8, 16, 32)


def _interpreted(device: torch.device) -> bool:
    # the CPU only runs triton kernels under TRITON_INTERPRET=1
    return device.type != "cuda"


def candidates(device: torch.device, numels: tuple[int, ...]) -> list[Config]:
    if _interpreted(device):
        # the interpreter pays a fixed cost per operation and program: large blocks
        return [Config(4096, 4), Config(16384, 4), Config(65536, 4)]
    mean = sum(numels) / max(1, len(numels))
    blocks = (512, 1024, 2048, 4096) if mean < 65536 else (1024, 2048, 4096)
    return [Config(b, w) for b in blocks for w in (4, 8)]


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
