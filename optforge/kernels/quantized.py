"""Block-wise 8-bit storage of a state in torch: codes (uint8, the parameter's shape) and one
float32 absmax per block of ``block`` consecutive elements in memory order; ``pack`` /
``unpack`` are the packed state of ``compiler/quant_format.py`` (codes, then scales).

The compiled kernels quantize and dequantize in registers; these functions are the same
format written as torch operations: the torch backend's loads and stores, checkpoint
conversion (an fp32 state loaded into an 8-bit optimizer, and back), and the reference the
kernels are tested against. The map and its decision boundaries are
``optforge.compiler.quant_map``'s.
"""
from __future__ import annotations

import functools
import math

import torch

from ..compiler.quant_format import DEFAULT_BLOCK, SMALL_TENSOR, QuantFormat  # noqa: F401
from ..compiler.quant_map import dynamic_map, midpoints


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
    codes, absmax = _quantize_rows(_padded_blocks(x, block), signed)
    return codes.view(-1)[: x.numel()].view(x.shape), absmax


def _quantize_rows(rows: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (uint8, one row per block) and absmax of float32 blocks; on the unsigned map
    a negative value gets code 0 (the value 0), as the kernels store it."""
    absmax = rows.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    normalised = rows / safe[:, None]
    bounds = _table(signed, "midpoints", rows.device)
    return torch.bucketize(normalised, bounds, right=False).to(torch.uint8), absmax


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


# ---- the packed state: [codes padded to whole blocks | float32 scales] -----------------
def pack(x: torch.Tensor, fmt: QuantFormat) -> torch.Tensor:
    """``x`` as a packed 8-bit state (1-D uint8, ``fmt.packed_bytes(x.numel())`` bytes)."""
    codes, absmax = _quantize_rows(_padded_blocks(x, fmt.block), fmt.signed)
    n = x.numel()
    out = torch.empty(fmt.packed_bytes(n), dtype=torch.uint8, device=x.device)
    out[:n] = codes.view(-1)[:n]
    out[n: fmt.scale_offset(n)] = 0  # the padding of the last block: never read
    out[fmt.scale_offset(n):] = absmax.view(torch.uint8)
    return out


def split(packed: torch.Tensor, fmt: QuantFormat, numel: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes: ``numel`` uint8, scales: float32 per block): views into ``packed``."""
    offset = fmt.scale_offset(numel)
    return packed[:numel], packed[offset:].view(torch.float32)


def join(codes: torch.Tensor, scales: torch.Tensor, fmt: QuantFormat) -> torch.Tensor:
    """The packed state of saved codes and scales (a checkpoint's), exactly."""
    n = codes.numel()
    if codes.dtype != torch.uint8 or scales.dtype != torch.float32 \
            or scales.numel() != fmt.blocks(n):
        raise ValueError(f"8-bit state of {n} elements in blocks of {fmt.block}: expected "
                         f"uint8 codes and {fmt.blocks(n)} float32 scales, got {codes.dtype} "
                         f"codes and {scales.numel()} {scales.dtype} scales")
    out = torch.zeros(fmt.packed_bytes(n), dtype=torch.uint8, device=codes.device)
    out[:n] = codes.reshape(-1)
    out[fmt.scale_offset(n):] = scales.reshape(-1).view(torch.uint8)
    return out


def unpack(packed: torch.Tensor, fmt: QuantFormat, shape) -> torch.Tensor:
    """The float32 values of a packed state, in ``shape``."""
    numel = math.prod(shape)
    codes, scales = split(packed, fmt, numel)
    return dequantize_blockwise(codes, scales, fmt.signed, fmt.block).view(shape)
