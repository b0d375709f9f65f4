"""Ahead-of-time compilation of generated kernels for an NVIDIA GPU, with no GPU present.

Triton's front end, LLVM back end and its bundled ``ptxas``/``cuobjdump`` all run on the
CPU, so a kernel can be built for sm_90 or sm_80 anywhere and its machine code read:
registers, spills and stack (``ptxas -v``), float64 instructions, 128-bit accesses and
the SASS instruction count. The AOT sweep test and ``benchmarks/aot_report.py`` use it.

Must run in a process where ``TRITON_INTERPRET`` is unset (triton decides at import
time whether kernels are interpreted) and with a fresh ``TRITON_CACHE_DIR``: a cached
kernel skips ptxas, and with it the register report.
"""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...compiler.packed_signs import vote_ops
from .configs import FP_FUSION  # the choice every launch pins

# launch argument types of the generated kernels (the launcher passes these)
ELEMENTWISE = {"addr_tab": "*i64", "n_tensors": "i32", "numel_tab": "*i64",
               "block_tensor": "*i32", "block_start": "*i64"}
STAGE_TABLES = {"shape_tab": "*i64", "rs_tab": "*fp32", "raddr_tab": "*i64"}
REDUCE = {"addr_tab": "*i64", "n_tensors": "i32", "shape_tab": "*i64", "rs_tab": "*fp32",
          "raddr_tab": "*i64", "tile_tab": "*i64", "out_t": "*fp32", "out_row": "*fp32",
          "out_col": "*fp32", "n_programs": "i32", "row_total": "i32", "col_total": "i32"}
ROUND = {"x_ptr": "*fp32", "out_ptr": "*i16", "n": "i32", "seed": "i32"}


@dataclass
class Stats:
    """What the machine code of one compiled kernel looks like."""

    registers: int
    stack: int  # bytes of stack frame
    spill_stores: int  # bytes
    spill_loads: int
    f64: int  # PTX instructions on float64
    v4_loads: int  # 128-bit global loads (ld.global.v4 / .v2.b64)
    v4_stores: int
    sass: int  # SASS instructions (NOPs excluded)
    div64: int  # PTX 64-bit integer divisions/remainders (each a ~70-instruction subroutine)
    fma: int  # PTX float32 fused multiply-adds (none when FMA contraction is off)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _ptxas_log(compile_fn):
    """Run ``compile_fn`` with triton's ptxas log printed, and capture that log."""
    from triton import knobs

    out = io.StringIO()
    old = knobs.nvidia.dump_ptxas_log
    knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(out):
            result = compile_fn()
    finally:
        knobs.nvidia.dump_ptxas_log = old
    return result, out.getvalue()


def sass_count(cubin: bytes) -> int:
    """SASS instructions of a cubin, NOPs excluded (cuobjdump bundled with triton)."""
    from triton import knobs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        text = subprocess.run([knobs.nvidia.cuobjdump.path, "-sass", str(path)],
                              capture_output=True, text=True, check=True).stdout
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", text)
    return sum(1 for op in ops if not op.startswith("NOP"))


def compile_kernel(fn, signature: dict, constexprs: dict, arch: int, num_warps: int,
                   sass: bool = False, fp_fusion: bool = FP_FUSION, with_ptx: bool = False):
    """Compile ``fn`` for ``sm_<arch>`` and describe its machine code: its Stats, or
    (Stats, PTX text) with ``with_ptx``.

    Raises whatever triton raises when the kernel does not compile (the caller names it).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = dict(signature)
    sig.update({k: "constexpr" for k in constexprs})
    src = ASTSource(fn, sig, constexprs=dict(constexprs))
    # two rules can generate the same kernel: triton then serves it from its cache
    # without running ptxas, so the first compile's report is kept here
    key = (src.hash(), arch, num_warps, sass, fp_fusion)
    if key in _SEEN:
        stats, ptx = _SEEN[key]
        return (stats, ptx) if with_ptx else stats
    kernel, log = _ptxas_log(lambda: triton.compile(
        src, target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "enable_fp_fusion": fp_fusion}))
    ptx = kernel.asm["ptx"]
    regs = re.search(r"Used (\d+) registers", log)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                      r"(\d+) bytes spill loads", log)
    if regs is None or frame is None:
        raise RuntimeError("no ptxas -v report captured: is TRITON_CACHE_DIR fresh? "
                           f"log: {log[-500:]!r}")
    stats = Stats(int(regs.group(1)), int(frame.group(1)), int(frame.group(2)),
                 int(frame.group(3)), len(re.findall(r"\.f64\b", ptx)),
                 len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.(?:b32|f32|u32)", ptx))
                 + len(re.findall(r"ld\.global(?:\.\w+)*\.v2\.(?:b64|u64)", ptx)),
                 len(re.findall(r"st\.global(?:\.\w+)*\.v4\.(?:b32|f32|u32)", ptx))
                 + len(re.findall(r"st\.global(?:\.\w+)*\.v2\.(?:b64|u64)", ptx)),
                 sass_count(kernel.asm["cubin"]) if sass else 0, div64_count(ptx),
                 len(re.findall(r"\bfma\.rn(?:\.ftz)?\.f32\b", ptx)))
    _SEEN[key] = (stats, ptx)
    return (stats, ptx) if with_ptx else stats


_SEEN: dict[tuple, tuple[Stats, str]] = {}


def div64_count(ptx: str) -> int:
    """64-bit integer ``div``/``rem`` instructions of a PTX listing."""
    return len(re.findall(r"\b(?:div|rem)\.[su]64\b", ptx))


def elementwise_signature(plan, stochastic=()) -> dict:
    sig = dict(ELEMENTWISE)
    if plan.reduce_stages:
        sig.update(STAGE_TABLES)
    sig.update({s.name: "fp32" for s in plan.scalar_args})
    sig.update({f"seed_{n}": "i32" for n in sorted(stochastic)})
    for name in vote_ops(plan):  # packed sign results: workers and row stride
        sig.update({f"world_{name}": "i32", f"stride_{name}": "i32"})
    return sig


def reduce_signature(plan) -> dict:
    return {**REDUCE, **{s.name: "fp32" for s in plan.scalar_args}}


TAIL = "    else:\n        mask = offs < numel\n"


# the full path of a kernel reading row results has three cases (printers/triton_reduce)
ONE_ROW = "        if col0 + BLOCK_SIZE <= n_cols:"
TWO_ROWS = "        elif n_cols >= BLOCK_SIZE:"
BRANCHES = {"one_row": ("        if True:", TWO_ROWS),
            "two_rows": ("        if False:", "        elif True:"),
            "short_rows": ("        if False:", "        elif False:")}


def full_path_only(source: str, branch: str | None = None) -> str:
    """The module with the elementwise kernel's masked tail path emptied: compiling it
    at two block sizes measures the full-block path's instructions per element.
    ``branch`` (a key of BRANCHES) keeps one case of a row-reading full path
    (constant conditions: triton compiles only the branch taken)."""
    head, rest = source.split(TAIL)
    tail_end = rest.index("\n\n\nkernel = ")
    if branch is not None:
        first, second = BRANCHES[branch]
        head = head.replace(ONE_ROW, first).replace(TWO_ROWS, second)
    return head + "    else:\n        pass" + rest[tail_end:]
