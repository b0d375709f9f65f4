"""Prints a plan with 8-bit states (compiler/quant_plan.py) as one numba prange kernel:
``numba_quant_step.py.tmpl``. Other tensors load and store as in ``numba.py``; each
8-bit state ``m`` is spelled here:

* views: ``a_m`` its codes (uint8), ``s_m`` the block scales, ``w_m`` a scratch row;
* per quantization block: ``sc_m``, the old scale;
* load: ``v_m = MAP[a_m[i]] * sc_m`` (float32, as the torch reference dequantizes);
* store: ``w_m[i2] = float32(new value)``; after the block, its absmax becomes the new
  scale and every value is requantized (``q8_code_packed`` of value / absmax, or of
  value / 1 for a block of zeros, as kernels/quantized.py divides).
"""
from __future__ import annotations

from ..abi import kernel_name, roundings, storage_dtypes
from ..plan import KernelPlan
from ..quant_plan import check_quantizable, float32_plan, written
from ..templates import render
from .numba import _NP, STORAGE, NumbaPrinter, compute_dtype, noise_lines

_TABLES = {True: "SIGNED", False: "UNSIGNED"}


def numba_quant_source(plan: KernelPlan, param_dtype: str = "float32") -> str:
    """The module for ``plan`` (which has 8-bit states) and parameters of ``param_dtype``;
    the address table's extra rows, one per 8-bit state in plan order, hold the address
    of each one's first scale."""
    formats = check_quantizable(plan, "numba")
    blocks = {fmt.block for fmt in formats.values()}
    if len(blocks) != 1:
        raise ValueError(f"rule {plan.rule_name!r}: 8-bit states of one rule share a block "
                         f"size, got {sorted(blocks)}")
    ftype = compute_dtype(param_dtype)
    pr = NumbaPrinter(plan.rule_name, ftype, param_dtype)
    dtypes = storage_dtypes(float32_plan(plan), param_dtype, "numba")
    rounding = roundings(plan, dtypes)
    slots = list(dtypes)
    views = []
    for k, name in enumerate(slots):
        if name in formats:
            views.append(f"        a_{name} = carray(ptr_u8(addresses[{k}, j] + lo), n)")
            continue
        ptr, size, _, _ = STORAGE[dtypes[name]]
        views.append(f"        a_{name} = carray({ptr}(addresses[{k}, j] + {size} * lo), n)")
    for r, name in enumerate(formats):
        row, block = len(slots) + r, formats[name].block
        views.append(f"        s_{name} = carray(ptr_f32(addresses[{row}, j] + 4 * (lo // "
                     f"{block})), nq)")
        views.append(f"        w_{name} = np.empty({block}, dtype=np.float32)")
        # the codes go through a scratch row too: a store through the codes' raw pointer
        # might alias the code tables as far as LLVM knows, which kept it from vectorizing
        # the lookup (gathers); a row it allocated cannot
        views.append(f"        c_{name} = np.empty({block}, dtype=np.uint8)")
    views += noise_lines(plan, rounding, " " * 8)
    return render("numba_quant_step.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  param_dtype=param_dtype, compute_dtype=ftype,
                  storage=", ".join(f"{n}={formats[n].dtype if n in formats else d}"
                                    for n, d in dtypes.items()),
                  slots="".join(f"{n!r}, " for n in slots),
                  storage_tuple="".join(
                      f"{(formats[n].dtype if n in formats else dtypes[n])!r}, " for n in slots),
                  n_scalars=str(len(plan.scalar_args)), qblock=str(blocks.pop()),
                  kernel=kernel_name(plan, param_dtype, "q8"),
                  scalars="\n".join(f"    {s.name} = {_NP[ftype]}(scalars[{k}])"
                                    for k, s in enumerate(plan.scalar_args)) or "    pass",
                  views="\n".join(views),
                  dequantize="\n".join(line for n, fmt in formats.items()
                                        for line in _dequantize(n, fmt.signed)),
                  body="\n".join(_body(plan, pr, dtypes, rounding, formats)),
                  requantize="\n".join(line for n, fmt in written(plan, formats).items()
                                        for line in _requantize(n, fmt.signed)) or "")


def _dequantize(name: str, signed: bool) -> list[str]:
    """Before a block's update: its values, from the codes and the block's old scale."""
    indent = " " * 12
    return [f"{indent}sc_{name} = s_{name}[q]",
            f"{indent}for i2 in range(qn):",
            f"{indent}    w_{name}[i2] = MAP_{_TABLES[signed]}[a_{name}[q0 + i2]] * sc_{name}"]


def _body(plan, pr, dtypes, rounding, formats) -> list[str]:
    indent = " " * 16
    lines = []
    for r in plan.loads:
        if r.name in formats:
            value = f"w_{r.name}[i2]"
            lines.append(f"{indent}v_{r.name} = {pr.f}({value})" if pr.ftype != "float32"
                         else f"{indent}v_{r.name} = {value}")
        else:
            lines.append(indent + pr.load(r.name, dtypes[r.name]))
    lines += [f"{indent}{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    for r, e in plan.stores:
        if r.name in formats:  # (its old value was read above: the row may take the new)
            lines.append(f"{indent}w_{r.name}[i2] = np.float32({pr.doprint(e)})")
        else:
            lines.append(indent + pr.store(r.name, dtypes[r.name], pr.doprint(e),
                                           rounding=rounding[r.name]))
    return lines or [indent + "pass"]


def _requantize(name: str, signed: bool) -> list[str]:
    """After a block's update: its new scale, the absmax, found as the largest magnitude
    bit pattern (non-negative floats order as their bits: an integer max, which LLVM
    vectorizes where a float compare-and-select under strict IEEE is not), then its codes
    (``value / absmax``, ``/ 1`` for a block of zeros, as kernels/quantized.py divides;
    one packed-table read per value, compiler/quant_packed.py), through the ``c_`` row."""
    table, indent = _TABLES[signed], " " * 12
    return [f"{indent}bits_{name} = np.int32(0)",
            f"{indent}for i2 in range(qn):",
            f"{indent}    bits_{name} = max(bits_{name}, np.float32(w_{name}[i2]).view(np.int32) "
            "& np.int32(0x7FFFFFFF))",
            f"{indent}amax_{name} = np.int32(bits_{name}).view(np.float32)",
            f"{indent}s_{name}[q] = amax_{name}",
            f"{indent}d_{name} = amax_{name} if amax_{name} > np.float32(0.0) "
            "else np.float32(1.0)",
            f"{indent}for i2 in range(qn):",
            f"{indent}    c_{name}[i2] = q8_code_packed(w_{name}[i2] / d_{name}, "
            f"PACKED_{table})",
            f"{indent}for i2 in range(qn):",
            f"{indent}    a_{name}[q0 + i2] = c_{name}[i2]"]
