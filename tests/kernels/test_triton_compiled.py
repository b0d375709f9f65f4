"""The generated kernels compile for a real GPU (sm_90, H100) on a machine without one.

Triton's front end and its LLVM/PTX back end run on the CPU: compiling ahead of time
catches what the interpreter cannot (compiled-only typing of pointer casts and integer
promotions) and shows the machine code's shape: 128-bit vector loads and stores on
the full-block path when addresses are aligned, IEEE div/sqrt, no float64. It runs in
a subprocess because this test process uses the interpreter (TRITON_INTERPRET=1).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, re, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from optforge.catalogue import AdamW, Lion
    from optforge.compiler.printers.triton import triton_source
    from optforge.kernels.cache import load_module
    from optforge.runtime.compiled import compile_rule

    out = {}
    for cls, dtype, sr, align in [(AdamW, "float32", (), 16), (AdamW, "float32", (), 1),
                                  (AdamW, "bfloat16", ("p",), 16), (Lion, "float16", (), 16)]:
        plan = compile_rule(cls.rule, cls.rule.default_variant).plan
        fn = load_module(triton_source(plan, dtype, sr), "triton").kernel
        sig = {"addr_tab": "*i64", "n_tensors": "i32", "numel_tab": "*i64",
               "block_tensor": "*i32", "block_start": "*i64"}
        sig.update({s.name: "fp32" for s in plan.scalar_args})
        sig.update({f"seed_{n}": "i32" for n in sr})
        sig.update(BLOCK_SIZE="constexpr", ALIGN="constexpr")
        src = ASTSource(fn, sig, constexprs={"BLOCK_SIZE": 2048, "ALIGN": align})
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                             options={"num_warps": 8}).asm["ptx"]
        out[f"{cls.__name__}-{dtype}-{align}"] = {
            "v4_loads": len(re.findall(r"ld\\.global\\.v4", ptx)),
            "v4_stores": len(re.findall(r"st\\.global\\.v4", ptx)),
            "f64": len(re.findall(r"\\.f64", ptx)),
            "div_rn": ptx.count("div.rn.f32"), "sqrt_rn": ptx.count("sqrt.rn.f32")}
    print(json.dumps(out))
""")


def test_kernels_compile_for_sm90_with_vector_accesses(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton"), TRITON_DEFAULT_FP_FUSION="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])
    # AdamW fp32, BLOCK_SIZE 2048, 8 warps: 8 floats per thread = two 128-bit accesses
    # for each of 4 loaded and 3 stored tensors, on the full-block path
    assert (r["AdamW-float32-16"]["v4_loads"], r["AdamW-float32-16"]["v4_stores"]) == (8, 6)
    assert (r["AdamW-float32-1"]["v4_loads"], r["AdamW-float32-1"]["v4_stores"]) == (0, 0)
    assert r["AdamW-bfloat16-16"]["v4_loads"] == 4  # 8 bf16 per thread: one 128-bit each
    assert r["Lion-float16-16"]["v4_stores"] == 2
    for name, counts in r.items():
        assert counts["f64"] == 0, name
    assert r["AdamW-float32-16"]["div_rn"] > 0 and r["AdamW-float32-16"]["sqrt_rn"] > 0
