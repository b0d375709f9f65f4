"""Figures for the benchmark JSON files in ``benchmarks/results/``, and a re-plot command.

    python benchmarks/plotting.py                # every results/*.json -> its .png
    python benchmarks/plotting.py results/x.json # just these

The benchmarks call the same functions when they finish, so a figure can be restyled
and regenerated from the stored measurements without timing anything again (a full run
takes tens of minutes on the 2-core machines these were measured on).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # optforge from a checkout
from optforge.plots import (legend_patches, loss_curves_from, machine_line, pyplot,  # noqa: E402
                            speedup_bars)

RESULTS = Path(__file__).resolve().parent / "results"


def save(stem: Path, data: dict, figure) -> Path:
    """``data`` as ``<stem>.json`` and ``figure(data, path)``'s plot as ``<stem>.png``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    figure(data, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and .png")
    return stem

OURS = "optforge-numba"
NICE = {"torch-loop": "torch for-loop", "torch-foreach": "torch foreach",
        "torch-fused": "torch fused", "po-Lamb-loop": "pytorch-optimizer Lamb",
        "po-Lamb-foreach": "pytorch-optimizer Lamb (foreach)",
        "torch-clip+fused": "clip_grad_norm_ + torch fused AdamW",
        "torch.optim.Muon": "torch.optim.Muon", "optforge-numba": "optforge (numba)",
        "optforge-torch": "optforge (torch backend)", "po-loop": "pytorch-optimizer",
        "po-foreach": "pytorch-optimizer (foreach)"}

SHORT = {"torch-loop": "for-loop", "torch-foreach": "foreach", "torch-fused": "fused",
         "po-Lamb-loop": "p-o Lamb", "po-Lamb-foreach": "p-o foreach",
         "torch-clip+fused": "clip+fused", "po-loop": "p-o loop",
         "po-foreach": "p-o foreach"}  # the reference under each bar


def _best_reference(ms: dict) -> tuple[str, float]:
    refs = {k: v for k, v in ms.items() if k not in (OURS, "copy") and not k.startswith("copy")}
    name = min(refs, key=refs.get)
    return name, refs[name]


def _rule_colors(results) -> dict:
    rules = list(dict.fromkeys(r["rule"] for r in results))
    return {rule: f"C{k}" for k, rule in enumerate(rules)}


def _speedup_panel(ax, results, reference="the fastest reference (per case)"):
    colors = _rule_colors(results)
    labels, values, notes = [], [], []
    for r in results:
        name, best = _best_reference(r["ms"])
        labels.append(f"{r['rule']}\n{r['case']}")
        values.append(best / r["ms"][OURS])
        notes.append("vs " + SHORT.get(name, name))
    speedup_bars(ax, labels, values, colors=[colors[r["rule"]] for r in results], notes=notes,
                 reference=reference)
    ax.tick_params(axis="x", labelsize=7)  # three-line labels, 12 bars: keep them apart
    legend_patches(ax, {f"optforge {rule}": c for rule, c in colors.items()},
                   loc="upper left", ncol=len(colors) + 1)


def _bandwidth_panel(ax, results):
    xs = range(len(results))
    ours = [r["gb_per_s"][OURS] for r in results]
    copy = [r["gb_per_s"]["copy"] for r in results]
    ax.bar([x - 0.2 for x in xs], ours, 0.4, color="C0", label="optforge (numba)", zorder=2)
    ax.bar([x + 0.2 for x in xs], copy, 0.4, color="0.7", zorder=2,
           label="copy kernel moving the same bytes")
    ax.set_xticks(list(xs), [f"{r['rule']} {r['case']}" for r in results], fontsize=8,
                  rotation=35, ha="right", rotation_mode="anchor")
    ax.set_ylabel("GB/s (bytes of the traffic model / time)")
    ax.set_ylim(0, max(ours + copy) * 1.25)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)


def elementwise_figure(data: dict, path: Path) -> Path:
    """bench_elementwise / bench_multistage JSON: speed-up vs torch's best, and bandwidth."""
    plt = pyplot()
    results = data["results"]
    fig, axes = plt.subplots(1, 2, figsize=(16, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    _speedup_panel(axes[0], results)
    _bandwidth_panel(axes[1], results)
    kind = "multi-stage rules (reductions)" if "multistage" in path.name else \
        "elementwise rules"
    refs = ("torch.optim for-loop, foreach and fused" if "elementwise" in kind else
            "p-o = pytorch-optimizer's Lamb; clip+fused = clip_grad_norm_ + fused AdamW")
    fig.suptitle(f"optforge {kind}: speed-up over the fastest reference ({refs})\n"
                 f"{machine_line(data['machine'])}; median of interleaved repeats",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def matrix_figure(data: dict, path: Path) -> Path:
    """bench_matrix JSON: Muon speed-up vs torch.optim.Muon, and where the time goes."""
    plt = pyplot()
    res = data["results"]
    ours = [k for k in res["ms"] if k.startswith("optforge")]
    ref = res["ms"]["torch.optim.Muon"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    speedup_bars(axes[0], [NICE.get(k, k).replace(" (", "\n(") for k in ours],
                 [ref / res["ms"][k] for k in ours], colors=["C0", "C1"][:len(ours)],
                 reference=f"torch.optim.Muon ({ref:.1f} ms)")
    axes[0].legend(fontsize=8, frameon=False, loc="upper left")
    names = list(res["breakdown_ms"])
    keys = ["newton-schulz", "matrix stage other", "reduce stage", "pre-stage kernel",
            "elementwise kernel", "rest"]
    bottom = [0.0] * len(names)
    for k, key in enumerate(keys):
        vals = [res["breakdown_ms"][n].get(key, 0.0) for n in names]
        axes[1].bar(range(len(names)), vals, 0.6, bottom=bottom, label=key, color=f"C{k}",
                    zorder=2)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for x, total in enumerate(bottom):
        axes[1].text(x, total, f"{total:.1f} ms", ha="center", va="bottom", fontsize=8)
    axes[1].set_xticks(range(len(names)), [NICE.get(n, n).replace(" (", "\n(") for n in names],
                       fontsize=8)
    axes[1].set_ylim(0, max(bottom) * 1.3)
    axes[1].set_ylabel("ms per step, instrumented (median per part)")
    axes[1].legend(fontsize=7, frameon=False, ncol=3, loc="upper left")
    fig.suptitle(f"Muon on {res['tensors']} matrices ({res['numel'] / 1e6:.1f}M parameters): "
                 f"optforge vs torch.optim.Muon\n{machine_line(data['machine'])}, "
                 f"{data.get('device', 'cpu')}; median of {res.get('repeats', '?')} "
                 "interleaved repeats", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# the results this module draws, by file-name prefix (other benchmarks draw their own
# figure, or none: tables such as compare-, step-overhead-, bandwidth-)
DRAWN = ("elementwise-", "multistage-", "new-entries-", "matrix-", "demo-")


def replot(json_path: Path) -> Path:
    """The figure for one results JSON, written beside it as .png."""
    data = json.loads(Path(json_path).read_text())
    png = Path(json_path).with_suffix(".png")
    if png.name.startswith("matrix-"):
        return matrix_figure(data, png)
    if png.name.startswith(("elementwise-", "multistage-", "new-entries-")):
        return elementwise_figure(data, png)
    if png.name.startswith("demo-"):  # written by `make demo`
        return loss_curves_from(data, png)
    raise ValueError(f"{json_path}: no figure for this kind of result (file name prefix "
                     f"{', '.join(DRAWN)})")


def main(argv=None) -> int:
    """Redraw the given results, or with none every stored result this module draws."""
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    for path in paths or sorted(p for p in RESULTS.glob("*.json")
                                if p.name.startswith(DRAWN)):
        print(f"wrote {replot(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
