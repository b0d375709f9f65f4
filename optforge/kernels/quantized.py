"""Block-wise 8-bit storage of a state in torch: codes (uint8, the parameter's shape) and one
float32 absmax per block of ``block`` consecutive elements in memory order.

The compiled kernels quantize and dequantize in registers; these functions are the same
format written as torch operations: the torch backend's loads and stores, checkpoint
conversion (an fp32 state loaded into an 8-bit optimizer, and back), and the reference the
kernels are tested against. The map and its decision boundaries are
``optforge.compiler.quant_map``'s.
"""
from __future__ import annotations

import functools

import torch

from ..compiler.quant_map import dynamic_map, midpoints

DEFAULT_BLOCK = 256
SMALL_TENSOR = 4096  # below this many elements a state stays unquantized, as bitsandbytes does


@functools.lru_cache(maxsize=None)
def _table(signed: bool, which: str, device: torch.device) -> torch.Tensor:
    values = dynamic_map(signed) if which == "map" else midpoints(signed)
    return torch.tensor(values, dtype=torch.float32, device=device)


def qmap(signed: bool, device="cpu") -> torch.Tensor:
    """The 256 map values (float32, ascending) on ``device``."""
    return _table(signed, "map", torch.device(device))


def blocks(numel: int, block: int = DEFAULT_BLOCK) -> int:
    """How many absmax scales a tensor of ``numel`` elements has."""
    return -(-numel // block)


def _padded_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    flat = x.detach().reshape(-1).float()
    pad = blocks(flat.numel(), block) * block - flat.numel()
    return torch.nn.functional.pad(flat, (0, pad)).view(-1, block)


def quantize_blockwise(x: torch.Tensor, signed: bool, block: int = DEFAULT_BLOCK
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, absmax): codes[i] is the nearest map value's index to x[i] / absmax of its
    block (ties to the lower code); a block of zeros has absmax 0 and codes of 0.0."""
    if not signed and bool((x < 0).any()):
        raise ValueError("unsigned 8-bit quantization of a tensor with negative values; "
                         "use the signed map for states that can be negative")
    rows = _padded_blocks(x, block)
    absmax = rows.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    normalised = rows / safe[:, None]
    bounds = _table(signed, "midpoints", rows.device)
    codes = torch.bucketize(normalised, bounds, right=False).to(torch.uint8)
    codes = codes.view(-1)[: x.numel()].view(x.shape)
    return codes, absmax


def dequantize_blockwise(codes: torch.Tensor, absmax: torch.Tensor, signed: bool,
                         block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """The float32 values ``map[code] * absmax`` of their block, in ``codes``' shape."""
    n = codes.numel()
    if absmax.numel() != blocks(n, block):
        raise ValueError(f"8-bit state of {n} elements in blocks of {block} needs "
                         f"{blocks(n, block)} absmax scales, got {absmax.numel()}")
    values = qmap(signed, codes.device)[codes.reshape(-1).long()]
    scale = absmax.float().repeat_interleave(block)[:n]
    return (values * scale).view(codes.shape)
