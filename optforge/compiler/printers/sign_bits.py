"""Packed sign bits in generated numba and triton kernels (the layout: compiler/packed_signs.py).

The pre-stage's store into a ``sign_bits`` buffer packs 8 elements into a byte and sets
the buffer's flag byte where a value is NaN; the elementwise stage's load of a
``sign_votes`` buffer counts the set bits of an element over the workers' rows and turns
the count into the collective's result (sum, mean or vote) in float32. Both kernels
already walk elements in blocks that start at multiples of 8 (numba: ``launcher.BLOCK``;
triton: ``BLOCK_SIZE``), so each byte is written by exactly one block: no atomics. The
flag byte is only ever set to 1, so blocks that set it concurrently agree.
"""
from __future__ import annotations

from ..packed_signs import PACKED, SIGN_BITS

__all__ = ["PACKED", "comm_args", "numba_comm_scalars", "numba_load", "numba_store",
           "numba_view", "triton_load", "triton_store"]

# -- numba: a scalar loop over the block's elements ``i`` (element ``lo + i``) -----------


def numba_view(name: str, slot: int, dtype: str) -> list[str]:
    """The block's views of a packed buffer (slot ``slot`` of the address table)."""
    address = f"addresses[{slot}, j]"
    if dtype == SIGN_BITS:  # this block's bytes, the flag byte, the byte being filled
        return [f"a_{name} = carray(ptr_u8({address} + 1 + (lo >> 3)), (n + 7) >> 3)",
                f"f_{name} = carray(ptr_u8({address}), 1)",
                f"w_{name} = 0"]
    # every worker's bytes of this block: row r starts stride bytes after row r - 1
    return [f"a_{name} = carray(ptr_u8({address} + 1 + (lo >> 3)), "
            f"(world_{name} - 1) * stride_{name} + ((n + 7) >> 3))"]


def numba_comm_scalars(votes: dict[str, str], first: int) -> list[str]:
    """Each packed result's worker count and row stride, after the ``first`` run-time
    scalars (the launcher appends them, exact in float64)."""
    lines = []
    for q, name in enumerate(votes):
        lines += [f"world_{name} = np.int64(scalars[{first + 2 * q}])",
                  f"stride_{name} = np.int64(scalars[{first + 2 * q + 1}])",
                  f"nworld_{name} = np.float32(world_{name})"]
    return lines


def numba_store(name: str, value: str) -> list[str]:
    """Bit ``i & 7`` of the byte being filled is ``value >= 0``; the byte is written when
    full or at the block's last element (its unused bits clear)."""
    return [f"o_{name} = {value}",
            f"if o_{name} != o_{name}:",
            f"    f_{name}[0] = 1",
            f"if o_{name} >= 0:",
            f"    w_{name} |= 1 << (i & 7)",
            "if (i & 7) == 7 or i == n - 1:",
            f"    a_{name}[i >> 3] = w_{name}",
            f"    w_{name} = 0"]


def numba_load(name: str, op: str, f: str) -> list[str]:
    """``v_<name>``: the collective's result for element ``i``, from the workers' bits."""
    total = f"np.float32(2 * c_{name} - world_{name})"
    value = {"sum": total, "mean": f"{total} / nworld_{name}",
             "vote": f"np.sign({total})"}[op]
    if f != "np.float32":
        value = f"{f}({value})"  # computed in float32, as the buffer it replaces was
    return [f"c_{name} = 0",
            f"for r_{name} in range(world_{name}):",
            f"    c_{name} += (a_{name}[r_{name} * stride_{name} + (i >> 3)] >> (i & 7)) & 1",
            f"v_{name} = {value}"]


# -- triton: a block of BLOCK_SIZE elements ``offs`` (a multiple of 8 from ``start``) ------


def triton_store(name: str, masked: bool) -> list[str]:
    """Pack ``o_<name>`` (a block): each group of 8 elements summed into one byte after
    shifting its bits into place; elements past ``numel`` give clear bits and no flag."""
    valid = " & mask" if masked else ""
    byte_mask = f", mask=q_{name} < ((numel + 7) >> 3)" if masked else ""
    return [f"s_{name} = tl.where((o_{name} >= 0){valid}, 1, 0).to(tl.int32) << "
            "(offs & 7).to(tl.int32)",
            f"b_{name} = tl.sum(tl.reshape(s_{name}, (BLOCK_SIZE // 8, 8)), axis=1)",
            f"q_{name} = (start >> 3) + tl.arange(0, BLOCK_SIZE // 8).to(tl.int64)",
            f"offs_{name} = 1 + q_{name}",  # past the flag byte
            f"tl.store(ptr_{name} + offs_{name}, b_{name}.to(tl.uint8){byte_mask})",
            f"nan_{name} = tl.max(tl.where((o_{name} != o_{name}){valid}, 1, 0), axis=0)",
            f"tl.store(ptr_{name}, nan_{name}.to(tl.uint8), mask=nan_{name} > 0)"]


def triton_load(name: str, op: str, masked: bool) -> list[str]:
    """``v_<name>``: the count of set bits over the workers' rows (an int64 offset walked
    by the row stride, so no index product can overflow), as the collective's float32
    result."""
    load = f"tl.load(ptr_{name} + offs_{name}{', mask=mask, other=0' if masked else ''})"
    total = f"(2 * c_{name} - world_{name}).to(tl.float32)"
    value = {"sum": total, "mean": f"tl.div_rn({total}, tl.cast(world_{name}, tl.float32))",
             "vote": f"sign_f32({total})"}[op]
    return [f"offs_{name} = 1 + (offs >> 3)",  # past the flag byte, in worker 0's row
            f"c_{name} = tl.zeros([BLOCK_SIZE], tl.int32)",
            f"for r_{name} in range(0, world_{name}):",
            f"    c_{name} += ({load}.to(tl.int32) >> (offs & 7).to(tl.int32)) & 1",
            f"    offs_{name} += stride_{name}",
            f"v_{name} = {value}"]


def comm_args(votes: dict[str, str]) -> str:
    """The kernel arguments of the packed results: worker count and row stride each."""
    return "".join(f"world_{n}, stride_{n}, " for n in votes)

