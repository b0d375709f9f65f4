"""Host-side cost of the triton backend's multi-tensor scheme, measurable on any machine.

    python benchmarks/bench_triton_layout.py

The scheme (kernels/triton/layout.py): one launch per bucket through an int64 address
table (one row per tensor role) and a block map (program -> tensor, first element).
This measures what it costs on the host, where it runs on every step: the launcher's
Python work per step with the launch itself stubbed out, the block map's one-time
build, and, under the Triton interpreter, one launch for 300 tensors against 300
launches. GPU timings of the same comparison are in bench_gpu.py (optforge-per-tensor).
"""
from __future__ import annotations

import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
import triton  # noqa: E402,F401

from optforge.catalogue import AdamW  # noqa: E402
from optforge.kernels.triton.launcher import TritonLauncher  # noqa: E402
from optforge.kernels.triton.layout import BlockMap, addresses_of  # noqa: E402
from optforge.kernels.triton.autotune import transformer_like_sizes, wall_timer  # noqa: E402
from optforge.runtime.compiled import compile_rule  # noqa: E402
from optforge.runtime.state import new_state  # noqa: E402


def median_seconds(fn, reps=20):
    return wall_timer(fn, reps, warmup=0)


def bucket(sizes, device):
    spec = AdamW.rule
    compiled = compile_rule(spec, spec.default_variant)
    params = [torch.zeros(n, device=device) for n in sizes]
    grads = [torch.zeros(n, device=device) for n in sizes]
    made = [new_state(compiled.plan.states, p, {}) for p in params]
    states = [[m[s] for m in made] for s in compiled.plan.states]
    return compiled, params, grads, states, compiled.scalars(spec.hyper_values(spec.defaults), 1.0)


def main() -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = transformer_like_sizes()
    print(f"# device {device}; transformer-like set: {len(sizes)} tensors, {sum(sizes):,} params")
    cpu = torch.device("cpu")
    t = median_seconds(lambda: BlockMap(tuple(sizes), 2048, cpu), 5)
    print(f"block map build, {len(sizes)} tensors at BLOCK_SIZE 2048: {t * 1e3:8.2f} ms (once per shape)")
    t = median_seconds(lambda: BlockMap((2**30,), 2048, cpu), 3)
    print(f"block map build, one 1B tensor at BLOCK_SIZE 2048:  {t * 1e3:8.2f} ms (once per shape)")

    small = [64] * len(sizes)  # same tensor count, tiny tensors: host cost dominates
    compiled, params, grads, states, scalars = bucket(small, device)
    launcher = TritonLauncher(compiled.plan)
    launcher(params, grads, states, scalars)
    real = launcher._launch
    launcher._launch = lambda *a, **k: None
    t = median_seconds(lambda: launcher(params, grads, states, scalars), 100)
    rows = [params, grads] + states
    t_addr = median_seconds(lambda: addresses_of(rows), 100)
    print(f"launcher host work per step, {len(small)} tensors, launch stubbed: {t * 1e6:7.0f} us "
          f"(address tuple of {sum(map(len, rows))} data_ptr() calls: {t_addr * 1e6:.0f} us)")
    launcher._launch = real
    one = median_seconds(lambda: launcher(params, grads, states, scalars), 3)
    singles = [([p], [g], [[s[i]] for s in states]) for i, (p, g) in enumerate(zip(params, grads))]
    for args in singles[:1]:
        launcher(*args, scalars)
    many = median_seconds(lambda: [launcher(*a, scalars) for a in singles], 2)
    print(f"{len(small)} tensors of 64: one launch {one * 1e3:.1f} ms, "
          f"one launch per tensor {many * 1e3:.1f} ms (wall clock, {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
