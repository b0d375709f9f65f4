"""``optforge demo``: a new rule from ``examples/`` as math, then a small training race.

Trains the same MLP (same initial weights, same batches) on a synthetic regression
task with torch.optim.AdamW, optforge's AdamW, and the example rule, on the CPU,
and prints final loss and time per step. Kept to about a minute on 2 cores.
"""
from __future__ import annotations

import importlib.util
import inspect
import time
from pathlib import Path

import torch

from .dsl import RuleSpec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "adabelief.py"


def load_example_rule(path: Path = EXAMPLE) -> RuleSpec:
    """The ``adabelief`` rule function defined in ``examples/adabelief.py``."""
    if not path.is_file():
        raise FileNotFoundError(f"the demo's example rule {path} is missing (the demo runs "
                                "from a source checkout: `make demo`)")
    spec = importlib.util.spec_from_file_location("optforge_example_adabelief", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return RuleSpec(module.adabelief)


def _task(seed: int = 0, n: int = 4096, dim: int = 32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    w = torch.randn(dim, 1, generator=gen) / dim ** 0.5
    y = torch.tanh(x @ w) + 0.5 * x[:, :1] * x[:, 1:2]
    return x, y


def _model(dim: int = 32) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(dim, 512), torch.nn.GELU(),
                               torch.nn.Linear(512, 512), torch.nn.GELU(),
                               torch.nn.Linear(512, 1))


def train(make_optimizer, steps: int, batch: int = 256) -> tuple[float, float]:
    """(final full-data loss, median milliseconds per optimizer step)."""
    x, y = _task()
    model = _model(x.shape[1])
    opt = make_optimizer(model.parameters())
    gen = torch.Generator().manual_seed(2)
    step_times = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
        start = time.perf_counter()
        opt.step()
        step_times.append(time.perf_counter() - start)
    with torch.no_grad():
        loss = torch.nn.functional.mse_loss(model(x), y).item()
    step_times.sort()
    return loss, 1e3 * step_times[len(step_times) // 2]


def run_demo(steps: int = 500) -> list[tuple[str, float, float]]:
    from . import AdamW, Optimizer
    from .runtime.backends import select

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from .compiler import lower, traffic

    spec = load_example_rule()
    print("A new optimizer, written in examples/adabelief.py with the optforge DSL:\n")
    print(inspect.getsource(spec.fn))
    plan = lower(spec.build(), spec.hyper_symbols)
    print("compiles to one fused elementwise kernel "
          f"({traffic(plan).total} bytes per float32 parameter per step):\n")
    print(plan.describe())
    backend = select("auto", torch.device("cpu"), torch.float32).name
    print(f"\nTraining a 3-layer MLP ({steps} steps, batch 256) on synthetic regression; "
          f"optforge runs its '{backend}' backend on this CPU.\n")
    runs = [
        ("torch.optim.AdamW", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False)),
        ("torch.optim.AdamW (foreach)", lambda ps: torch.optim.AdamW(ps, lr=1e-3,
                                                                     foreach=True)),
        ("optforge.AdamW", lambda ps: AdamW(ps, lr=1e-3)),
        ("optforge AdaBelief (example)", lambda ps: Optimizer(ps, spec, lr=1e-3)),
    ]
    rows = []
    for name, make in runs:
        train(make, steps=3)  # compile / warm up outside the timed run
        loss, ms = train(make, steps)
        rows.append((name, loss, ms))
    width = max(len(r[0]) for r in rows)
    print(f"{'optimizer'.ljust(width)}  final loss  ms/step (median)")
    for name, loss, ms in rows:
        print(f"{name.ljust(width)}  {loss:10.5f}  {ms:8.3f}")
    same = abs(rows[0][1] - rows[2][1]) <= 1e-4 * max(1.0, abs(rows[0][1]))
    print(f"\noptforge.AdamW {'matches' if same else 'DIFFERS FROM'} torch.optim.AdamW "
          f"(final loss {rows[2][1]:.6f} vs {rows[0][1]:.6f}).")
    return rows
