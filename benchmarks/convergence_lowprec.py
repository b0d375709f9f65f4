"""Convergence of AdamW with memory-lean states at their DEFAULT settings (issue 16).

A 64-256-256-1 GELU MLP (about 83k parameters) fits a fixed random teacher network plus
noise (4096 synthetic samples, 64 features): 400 minibatch steps of 128, fixed seeds,
optforge's AdamW (lr 1e-3, weight decay 0.01, torch's defaults otherwise) on the numba
backend with
  * fp32 states (the reference),
  * bf16 states rounded stochastically (``state_dtype="bfloat16", rounding="stochastic"``),
  * bf16 states rounded to nearest (for comparison; not a must-show),
  * 8-bit block-wise states with every default: blocks of 256, tensors below 4096
    elements kept in float32. Here both hidden weight matrices (64x256, 256x256: 98% of
    the parameters) are quantized; the biases and the 256x1 output layer stay fp32.
Every run starts from the same weights and sees the same batches. The setup was fixed
before its results were looked at (no seed or learning rate was tuned to the result).

Reports the full-data loss at the end of each run and its relative gap to fp32 states;
writes benchmarks/results/convergence-lowprec.json and .png (loss curves).
Usage: python benchmarks/convergence_lowprec.py [--steps 400] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # optforge from a checkout
import optforge  # noqa: E402
from plotting import save  # noqa: E402

RESULTS = Path(__file__).with_name("results")
SAMPLES, FEATURES, HIDDEN, BATCH = 4096, 64, 256, 128
STEPS, EVERY = 400, 10  # training steps; full-data loss recorded every EVERY steps
# variant -> AdamW storage options (everything else at optforge's defaults)
VARIANTS = {
    "fp32 states": {},
    "bf16 states SR": {"state_dtype": "bfloat16", "rounding": "stochastic"},
    "bf16 states nearest": {"state_dtype": "bfloat16"},
    "8-bit states (defaults)": {"state_dtype": "int8"},
}
REFERENCE = "fp32 states"


def task(seed: int = 0):
    """(x, y): y is a random 64-32-1 tanh teacher of x plus Gaussian noise (std 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLES, FEATURES, generator=gen)
    w1 = torch.randn(FEATURES, 32, generator=gen) / FEATURES ** 0.5
    w2 = torch.randn(32, 1, generator=gen) / 32 ** 0.5
    y = torch.tanh(x @ w1) @ w2 + 0.1 * torch.randn(SAMPLES, 1, generator=gen)
    return x, y


def model(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)  # the same initial weights for every variant
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.GELU(),
                               torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.GELU(),
                               torch.nn.Linear(HIDDEN, 1))


def train(options: dict, steps: int = STEPS, data=None):
    """(the full-data loss curve [(step, loss)] of one AdamW run with ``options``, the
    fraction of the parameters whose states it stores in 8 bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and deterministic
    try:
        return _train(options, steps, data if data is not None else task())
    finally:
        torch.set_num_threads(threads)


def _train(options: dict, steps: int, data):
    x, y = data
    net = model()
    opt = optforge.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01, backend="numba",
                         seed=1, **options)
    batches = torch.Generator().manual_seed(2)  # the same batches for every variant

    def full_loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(net(x), y).item()

    curve = [(0, full_loss())]
    for step in range(1, steps + 1):
        idx = torch.randint(0, SAMPLES, (BATCH,), generator=batches)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
        opt.step()
        if step % EVERY == 0 or step == steps:
            curve.append((step, full_loss()))
    # read from the states themselves: 8-bit ones are uint8 buffers (codes + scales)
    quantized = sum(p.numel() for p in net.parameters()
                    if opt.state[p]["exp_avg"].dtype == torch.uint8)
    return curve, quantized / sum(p.numel() for p in net.parameters())


def run(steps: int = STEPS) -> dict:
    data = task()
    runs = {name: train(options, steps, data) for name, options in VARIANTS.items()}
    curves = {name: curve for name, (curve, _) in runs.items()}
    final = {name: c[-1][1] for name, c in curves.items()}
    ref = final[REFERENCE]
    return {"setup": {"model": f"{FEATURES}-{HIDDEN}-{HIDDEN}-1 GELU MLP", "samples": SAMPLES,
                      "batch": BATCH, "steps": steps, "lr": 1e-3, "weight_decay": 0.01,
                      "backend": "numba", "options": VARIANTS,
                      "quantized_fraction": {n: q for n, (_, q) in runs.items()}},
            "initial_loss": curves[REFERENCE][0][1], "final_loss": final,
            "relative_gap_to_fp32": {n: (v - ref) / ref for n, v in final.items()},
            "curves": curves}


def plot(data: dict, path: Path) -> None:
    from optforge.plots import pyplot
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in data["curves"].items():
        steps, losses = zip(*curve)
        gap = 100 * data["relative_gap_to_fp32"][name]
        ax.plot(steps, losses, label=f"{name}: final {losses[-1]:.4f} ({gap:+.2f}%)")
    ax.set_yscale("log")
    ax.set_xlabel("AdamW step")
    ax.set_ylabel("full-data MSE")
    ax.set_title(f"optforge AdamW, states at default settings: {data['setup']['model']}, "
                 "synthetic regression", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    data = run(args.steps)
    for name, loss in data["final_loss"].items():
        print(f"{name:26} final loss {loss:.5f}  "
              f"{100 * data['relative_gap_to_fp32'][name]:+.2f}% vs fp32 states")
    return save(args.out / "convergence-lowprec", data, plot)


if __name__ == "__main__":
    main()
