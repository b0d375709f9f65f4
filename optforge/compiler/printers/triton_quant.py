"""Prints a plan with 8-bit states (compiler/quant_plan.py) as one triton kernel over
[ROWS, QBLOCK] tiles: ``triton_quant_kernel.py.tmpl``. Other tensors load and store as in
``triton.py`` (masked); each 8-bit state ``m`` is spelled here:

* load: ``v_m = map[codes] * scale[row]`` (float32, as kernels/quantized.py);
* store: the row's absmax of the new values (masked elements count 0) is the new scale,
  the codes are ``q8_code(value / absmax)`` (``/ 1`` for a block of zeros).

The tables arrive as two buffers (float32 maps and midpoints + inf, int32 code tables:
the template says their layout); stochastic rounding is not spelled here (refused).
"""
from __future__ import annotations

from ..abi import kernel_name, roundings, storage_dtypes, tensor_refs
from ..errors import CompileError
from ..plan import KernelPlan, Rounding
from ..quant_format import BASE, WIDTH
from ..quant_plan import check_quantizable, float32_plan, written
from ..templates import render
from .triton import TritonPrinter, helpers, pointer_type, scalar_casts

TABLE_LENGTH = 2 * WIDTH + 1


def triton_quant_source(plan: KernelPlan, param_dtype: str = "float32",
                        interpreted: bool = False) -> str:
    formats = check_quantizable(plan, "triton")
    blocks = {fmt.block for fmt in formats.values()}
    dtypes = storage_dtypes(float32_plan(plan), param_dtype, "triton")
    rounding = roundings(plan, dtypes)
    if len(blocks) != 1 or Rounding.STOCHASTIC in rounding.values():
        raise CompileError(f"rule {plan.rule_name!r}: the triton 8-bit kernel needs one block "
                           "size and no stochastic rounding")
    pr = TritonPrinter(plan.rule_name, dtypes.get("p", param_dtype))
    pr.note_scalar_temps(plan.temps)
    refs = tensor_refs(plan)
    pointers = []
    for k, r in enumerate(refs):
        kind = "tl.uint8" if r.name in formats else pointer_type(dtypes[r.name], interpreted)
        pointers.append(f"    ptr_{r.name} = tl.load(addr_tab + {k} * n_tensors + tid)"
                        f".to(tl.pointer_type({kind}))")
    for k, name in enumerate(formats):
        pointers.append(f"    scale_{name} = tl.load(addr_tab + {len(refs) + k} * n_tensors "
                        "+ tid).to(tl.pointer_type(tl.float32))")
    return render("triton_quant_kernel.py", rule=plan.rule_name,
                  fingerprint=plan.fingerprint(),
                  dtypes=", ".join(f"{n}:{formats[n].dtype if n in formats else d}"
                                   for n, d in dtypes.items()),
                  helpers=helpers(interpreted), base=str(BASE), width=str(WIDTH),
                  table_length=str(TABLE_LENGTH),
                  kernel=kernel_name(plan, param_dtype, "q8", str(interpreted)),
                  args="".join(f"{s.name}, " for s in plan.scalar_args),
                  casts=scalar_casts(plan), pointers="\n".join(pointers),
                  body="\n".join("    " + line
                                 for line in _body(plan, pr, dtypes, formats, rounding)))


def _body(plan, pr, dtypes, formats, rounding) -> list[str]:
    lines = []
    for r in plan.loads:
        if r.name in formats:
            tag = "s" if formats[r.name].signed else "u"
            lines += [f"codes_{r.name} = tl.load(ptr_{r.name} + offs, mask=mask, other=0)",
                      f"old_{r.name} = tl.load(scale_{r.name} + qblock, mask=row_mask, "
                      "other=0.0)",
                      f"v_{r.name} = tl.load(map_{tag} + codes_{r.name}.to(tl.int32)) * "
                      f"old_{r.name}[:, None]"]
        else:
            lines.append(pr.load(r.name, dtypes[r.name], masked=True))
    lines += [f"{s.name} = {pr.doprint(e)}" for s, e in plan.temps]
    for r, e in plan.stores:
        value = pr.doprint(e)
        if not pr.tensor(e):
            value = f"{value} + tl.zeros([ROWS, QBLOCK], tl.float32)"
        lines.append(f"o_{r.name} = {value}")
    quantized = written(plan, formats)
    for r, _ in plan.stores:
        if r.name not in quantized:
            lines.append(pr.store(r.name, dtypes[r.name], f"o_{r.name}", True,
                                  rounding[r.name]))
            continue
        tag, n = ("s" if formats[r.name].signed else "u"), r.name
        lines += [f"amax_{n} = tl.max(tl.where(mask, tl.abs(o_{n}), 0.0), axis=1)",
                  f"tl.store(scale_{n} + qblock, amax_{n}, mask=row_mask)",
                  f"d_{n} = tl.where(amax_{n} > 0.0, amax_{n}, 1.0)",
                  f"tl.store(ptr_{n} + offs, q8_code(tl.div_rn(o_{n}, d_{n}[:, None]), mid_{tag},"
                  f" tab_{tag}), mask=mask)"]
    return lines
