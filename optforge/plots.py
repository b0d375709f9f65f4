"""The figures optforge writes: speed-up bars for benchmarks, loss curves for the demo.

One style for all of them: a linear speed-up axis with the value on every bar and a line
at 1x (torch's best), a title that says which torch, dtype and machine were measured,
legends with the names people know. matplotlib is imported only here, on use (it is in
the ``bench`` extra, not a dependency of optforge).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt
    plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True,
                         "font.size": 9})
    return plt


def machine_line(machine: dict, dtype: str = "float32") -> str:
    """``torch 2.13.0+cpu, numba 0.68.1, float32, 2 CPUs (AMD EPYC)`` from a bench JSON."""
    parts = [f"torch {machine['torch']}"]
    if machine.get("numba"):
        parts.append(f"numba {machine['numba']}")
    parts.append(dtype)
    where = machine.get("gpu") or f"{machine.get('cpus', '?')} CPUs ({machine.get('model')})"
    parts.append(where)
    return ", ".join(parts)


def speedup_bars(ax, labels, values, colors=None, notes=None, reference="torch's best",
                 ylabel=None):
    """Linear bars of ``values`` (x faster than the reference) with the value on each bar,
    an optional note under each label (which reference was best) and a line at 1x."""
    xs = range(len(values))
    bars = ax.bar(xs, values, 0.7, color=colors or "C0", zorder=2)
    top = max(values + [1.0])
    for x, bar, v in zip(xs, bars, values):
        ax.text(x, v + top * 0.015, f"{v:.2f}x", ha="center", va="bottom", fontsize=8,
                fontweight="bold", zorder=4,  # above the 1x line it may sit on
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    # the 1x line is named in the legend: text on the plot would sit on bar labels
    ax.axhline(1.0, color="0.15", lw=1, ls="--", zorder=3, label=f"1x = {reference}")
    ax.set_ylim(0, top * 1.2)
    if notes:  # under the label: inside a short bar a note would run over its top
        labels = [f"{label}\n{note}" if note else label for label, note in zip(labels, notes)]
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel(ylabel or f"speed-up vs {reference} (x, higher is better)")


def legend_patches(ax, names_colors: dict, **kw) -> None:
    """A legend of colour patches plus whatever the axes already labelled (the 1x line)."""
    from matplotlib.patches import Patch
    handles = [Patch(color=c, label=n) for n, c in names_colors.items()]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=8,
              frameon=False, **kw)


def loss_curves(path: Path, curves: dict, title: str, subtitle: str = "",
                xlabel: str = "optimizer step") -> Path:
    """``curves``: legend name -> (steps, losses). A log-scale loss plot saved at ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    # curves that coincide (optforge.AdamW on torch's) must all stay visible: each is
    # drawn thinner than the one before it, and dashed differently
    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1))]
    for k, (name, (steps, losses)) in enumerate(curves.items()):
        ax.plot(steps, losses, linestyle=styles[k % len(styles)], color=f"C{k % 10}",
                lw=max(1.0, 3.4 - 0.6 * k), label=name)
    finite = [v for _, ls in curves.values() for v in ls if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("full-data training loss (MSE)")
    ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    if subtitle:
        ax.set_title("\n".join(textwrap.wrap(subtitle, 110)), fontsize=8, color="0.3")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loss_curves_from(data: dict, path: Path) -> Path:
    """``loss_curves`` from the demo's JSON (``{"title", "subtitle", "curves": {name:
    {"steps", "loss"}}}``)."""
    curves = {name: (c["steps"], c["loss"]) for name, c in data["curves"].items()}
    return loss_curves(Path(path), curves, data["title"], data.get("subtitle", ""))
