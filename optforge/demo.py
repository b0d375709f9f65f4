"""``optforge demo``: a new rule from ``examples/`` as math, then a small training race.

Trains the same MLP (same initial weights, same batches) on a synthetic regression
task with torch.optim.AdamW (for-loop and foreach), optforge's AdamW and the example
rule, on the CPU. The four take turns epoch by epoch (the order rotating), so a busy
machine slows them alike; the table reports the median time per step over the epochs
and how much it varied. The default is 4 x 500 steps, about a minute on an idle 2-core
CPU (on a machine at load average 15 the same run took 20 minutes: the table's spread
says how busy it was). ``--plot DIR`` (``make demo``) also writes the loss curves, and
those of six catalogue optimizers on the same task (6 x 500 more steps), as PNG + JSON.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import statistics
import textwrap
import time
from pathlib import Path

import torch

from .dsl import RuleSpec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "adabelief.py"
BATCH, SAMPLES = 256, 4096
STEPS_PER_EPOCH = SAMPLES // BATCH


def load_example_rule(path: Path = EXAMPLE) -> RuleSpec:
    """The ``adabelief`` rule function defined in ``examples/adabelief.py``."""
    if not path.is_file():
        raise FileNotFoundError(f"the demo's example rule {path} is missing (the demo runs "
                                "from a source checkout: `make demo`)")
    spec = importlib.util.spec_from_file_location("optforge_example_adabelief", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return RuleSpec(module.adabelief)


def _task(seed: int = 0, n: int = SAMPLES, dim: int = 32):
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


class Run:
    """One optimizer's training: its own model copy, batch stream and records."""

    def __init__(self, name: str, make_optimizer, data):
        self.name, (self.x, self.y) = name, data
        self.model = _model(self.x.shape[1])
        self.opt = make_optimizer(self.model)
        self.gen = torch.Generator().manual_seed(2)  # the same batches for every run
        self.steps, self.curve = 0, [(0, self.loss())]  # (step, full-data loss)
        self.epoch_ms: list[float] = []  # median ms per optimizer step, one per epoch

    def loss(self) -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(self.model(self.x), self.y).item()

    def train(self, steps: int) -> None:
        times = []
        for _ in range(steps):
            idx = torch.randint(0, self.x.shape[0], (BATCH,), generator=self.gen)
            self.opt.zero_grad()
            torch.nn.functional.mse_loss(self.model(self.x[idx]), self.y[idx]).backward()
            start = time.perf_counter()
            self.opt.step()
            times.append(time.perf_counter() - start)
        self.steps += steps
        self.epoch_ms.append(1e3 * statistics.median(times))
        self.curve.append((self.steps, self.loss()))


_SHORT = {"torch.optim.AdamW": "torch", "torch.optim.AdamW (foreach)": "foreach",
          "optforge.AdamW": "optforge", "optforge AdaBelief (example)": "AdaBelief"}


def _short(name: str) -> str:
    """A name for the progress line (which must fit 100 columns)."""
    return _SHORT.get(name, name.split(" ")[0])


def race(makers: dict, steps: int, log=print) -> list[Run]:
    """Train every ``name -> make_optimizer(model)`` for ``steps`` steps, an epoch each in
    turn (rotating who goes first); one progress line per epoch through ``log``."""
    data = _task()
    for make in makers.values():  # first steps compile: keep them out of the timings
        Run("warm-up", make, data).train(3)
    runs = [Run(name, make, data) for name, make in makers.items()]
    epochs = -(-steps // STEPS_PER_EPOCH)
    started = time.perf_counter()
    for epoch in range(epochs):
        n = min(STEPS_PER_EPOCH, steps - epoch * STEPS_PER_EPOCH)
        for k in range(len(runs)):
            runs[(epoch + k) % len(runs)].train(n)
        losses = "  ".join(f"{_short(r.name)} {r.curve[-1][1]:.4f}" for r in runs)
        line = (f"epoch {epoch + 1:>2}/{epochs}  {time.perf_counter() - started:5.1f} s  "
                f"loss: {losses}")
        log("\n".join(textwrap.wrap(line, 100, subsequent_indent=" " * 8)))  # 100 columns
    return runs


def demo_optimizers(spec: RuleSpec) -> dict:
    from . import AdamW, Optimizer
    return {
        "torch.optim.AdamW": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3,
                                                         foreach=False),
        "torch.optim.AdamW (foreach)": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3,
                                                                   foreach=True),
        "optforge.AdamW": lambda m: AdamW(m.parameters(), lr=1e-3),
        "optforge AdaBelief (example)": lambda m: Optimizer(m.parameters(), spec, lr=1e-3),
    }


def catalogue_optimizers() -> dict:
    """A few catalogue optimizers at learning rates usual for each (not tuned here)."""
    import optforge
    return {
        "SGD (momentum 0.9)": lambda m: optforge.SGD(m.parameters(), lr=0.05, momentum=0.9),
        "AdamW": lambda m: optforge.AdamW(m.parameters(), lr=1e-3),
        "Lion": lambda m: optforge.Lion(m.parameters(), lr=1e-4),
        "LAMB": lambda m: optforge.LAMB(m.parameters(), lr=1e-2),
        "Muon (+AdamW on biases)": lambda m: optforge.Muon(
            optforge.split_matrix_params(m, lr=1e-3), lr=0.02),
        "Adagrad": lambda m: optforge.Adagrad(m.parameters(), lr=1e-2),
    }


def timing_table(runs: list[Run]) -> str:
    """Median ms per step over the epochs, with the quartiles across epochs as the noise."""
    width = max(len(r.name) for r in runs)
    lines = [f"{'optimizer'.ljust(width)}  final loss  ms/step median  (quartiles over "
             f"{len(runs[0].epoch_ms)} epochs)"]
    for r in runs:
        q = statistics.quantiles(r.epoch_ms, n=4) if len(r.epoch_ms) > 1 else [r.epoch_ms[0]] * 3
        lines.append(f"{r.name.ljust(width)}  {r.curve[-1][1]:10.5f}  {q[1]:14.3f}  "
                     f"({q[0]:.3f} - {q[2]:.3f})")
    return "\n".join(lines)


def run_demo(steps: int = 500, plot_dir: str | Path | None = None) -> list[tuple[str, float, float]]:
    from .compiler import lower, traffic
    from .runtime.backends import select

    spec = load_example_rule()
    print("A new optimizer, written in examples/adabelief.py with the optforge DSL:\n")
    print(inspect.getsource(spec.fn))
    plan = lower(spec.build(), spec.hyper_symbols)
    print("compiles to one fused elementwise kernel "
          f"({traffic(plan).total} bytes per float32 parameter per step):\n")
    print(plan.describe())
    backend = select("auto", torch.device("cpu"), torch.float32).name
    print(f"\nTraining a 3-layer MLP ({steps} steps, batch {BATCH}, {STEPS_PER_EPOCH} steps an "
          f"epoch) on synthetic regression; optforge runs its '{backend}' backend on this CPU."
          "\nThe optimizers take turns epoch by epoch, so machine load hits them alike.\n")
    runs = race(demo_optimizers(spec), steps)
    print()
    print(timing_table(runs))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nStep times vary with what else the machine runs (load average {load:.1f} on "
          f"{os.cpu_count()} CPUs): a gap smaller than the quartile ranges above is noise.")
    rows = [(r.name, r.curve[-1][1], statistics.median(r.epoch_ms)) for r in runs]
    same = abs(rows[0][1] - rows[2][1]) <= 1e-4 * max(1.0, abs(rows[0][1]))
    print(f"optforge.AdamW {'matches' if same else 'DIFFERS FROM'} torch.optim.AdamW "
          f"(final loss {rows[2][1]:.6f} vs {rows[0][1]:.6f}).")
    if plot_dir is not None:
        write_plots(runs, Path(plot_dir), steps)
    return rows


def _save_curves(path: Path, runs: list[Run], title: str, subtitle: str) -> Path:
    """The curves as JSON beside the PNG (benchmarks/plotting.py redraws from it), then
    the PNG."""
    from .plots import loss_curves_from
    data = {"title": title, "subtitle": subtitle,
            "curves": {r.name: {"steps": [s for s, _ in r.curve],
                                "loss": [v for _, v in r.curve],
                                "ms_per_step_by_epoch": r.epoch_ms} for r in runs}}
    path.with_suffix(".json").write_text(json.dumps(data, indent=1))
    return loss_curves_from(data, path)


def write_plots(demo_runs: list[Run], out: Path, steps: int) -> list[Path]:
    """The demo's loss curves, and a few catalogue optimizers' on the same task."""
    out.mkdir(parents=True, exist_ok=True)
    task = (f"3-layer MLP (32-512-512-1, GELU), synthetic regression, batch {BATCH}, "
            f"float32, torch {torch.__version__}, {os.cpu_count()} CPUs")
    paths = [_save_curves(out / "demo-loss.png", demo_runs,
                          "optforge demo: the same training with torch.optim and optforge",
                          task + "; optforge.AdamW's curve lies on torch's")]
    print(f"\nTraining a few catalogue optimizers on the same task for the plot "
          f"({steps} steps each)...")
    runs = race(catalogue_optimizers(), steps)
    paths.append(_save_curves(out / "demo-catalogue-loss.png", runs,
                              "optforge catalogue optimizers on the demo task",
                              task + "; usual learning rates, not tuned"))
    for path in paths:
        print(f"wrote {path} (and .json)")
    return paths
