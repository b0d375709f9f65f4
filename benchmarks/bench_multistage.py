"""Multi-stage optimizer steps on CPU: a reduce pass, then the elementwise step.

Two rules whose step needs a norm first, on one tensor of 1M, 10M and 50M parameters and
on 200 tensors of mixed sizes (1k-500k, seeded; the set of bench_elementwise.py):

* LAMB (per-tensor trust ratio ||p|| / ||r||): optforge.LAMB on the numba backend vs
  pytorch-optimizer's Lamb, with foreach=False and foreach=True. Its flags are set to
  our semantics as in tests/catalogue/test_lamb.py: weight_decouple=False (wd p inside
  r and its norm, as the paper), adam_debias=True with our bias_correction=False (it
  bias-corrects only the first moment, through the step size), clamp = inf (phi = z).
  Left different: its ratio is ||p|| / (||r|| + eps) (not settable); it computes the
  norms per tensor in float32 torch ops like ours.
* Global-clip AdamW: chain(clip_by_global_norm(), scale_by_adam(),
  add_decayed_weights(), scale_by_lr()) on the numba backend (the group's gradient norm
  in a reduce pass, the clip coefficient applied inside the fused AdamW step, the
  gradients left as they are) vs torch.nn.utils.clip_grad_norm_ (which rescales the
  gradients in place) + torch.optim.AdamW(fused=True).
* a numba copy kernel moving the bytes the traffic model gives for our step (the
  reduce pass's reads included): the bandwidth ceiling the step is compared with.

Each variant: warmup steps (compilation included there), then the median of REPEATS
timed steps, variants interleaved within each repeat so that a noisy neighbour hurts
them all alike, the order rotated each repeat (bench_elementwise.interleaved_times). Prints a table; writes JSON + PNG to benchmarks/results/.
Usage: python benchmarks/bench_multistage.py [--quick] [--repeats N]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from pytorch_optimizer import Lamb as POLamb

import optforge
from optforge.compiler import traffic
from optforge.dsl import add_decayed_weights, chain, clip_by_global_norm, scale_by_adam, scale_by_lr
from optforge.dsl.spec import RuleSpec
from optforge.runtime.compiled import compile_rule

sys.path.insert(0, str(Path(__file__).parent))
import bench_elementwise  # noqa: E402
from bench_elementwise import arguments, describe, machine, run_cases, write_results  # noqa: E402

LAMB_KW = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-6)
ADAMW_KW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
MAX_NORM = 1.0
clipped_adamw = chain(clip_by_global_norm(MAX_NORM), scale_by_adam(), add_decayed_weights(),
                      scale_by_lr(), name="clipped_adamw")


def _po_lamb(params, foreach):
    opt = POLamb(params, weight_decouple=False, adam_debias=True, foreach=foreach, **LAMB_KW)
    opt.clamp = float("inf")
    return opt


class ClipThenFused:
    """torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW(fused=True): the torch way."""

    def __init__(self, params):
        self.params = list(params)
        self.opt = torch.optim.AdamW(self.params, fused=True, **ADAMW_KW)

    def step(self):
        torch.nn.utils.clip_grad_norm_(self.params, MAX_NORM)
        self.opt.step()


def variants(rule: str, params):
    if rule == "LAMB":
        return {"optforge-numba": optforge.LAMB(params, backend="numba", bias_correction=False,
                                                **LAMB_KW),
                "po-Lamb-loop": _po_lamb(params, foreach=False),
                "po-Lamb-foreach": _po_lamb(params, foreach=True)}
    return {"optforge-numba": optforge.Optimizer(params, clipped_adamw, backend="numba",
                                                 max_norm=MAX_NORM, **ADAMW_KW),
            "torch-clip+fused": ClipThenFused(params)}


def bytes_per_param(rule: str) -> int:
    spec = optforge.LAMB.rule if rule == "LAMB" else RuleSpec(clipped_adamw)
    variant = spec.variant_of({**spec.defaults, **({"bias_correction": False}
                                                   if rule == "LAMB" else {})})
    return traffic(compile_rule(spec, variant).plan).total


def time_case(rule, numels, repeats):
    return bench_elementwise.time_case(rule, numels, repeats, make=variants,
                                       per_elem=bytes_per_param(rule))


def table(results):
    head = (f"{'rule':11} {'case':10} {'ours ms':>8} {'reference':>17} {'ref ms':>8} "
            f"{'x ref':>6} {'other':>15} {'other ms':>9} {'x other':>7} {'B/param':>7} "
            f"{'GB/s':>6} {'copy GB/s':>9} {'% copy':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        ms, ours = r["ms"], r["ms"]["optforge-numba"]
        refs = [k for k in ms if k not in ("optforge-numba", "copy")]
        best = min(refs, key=ms.get)  # the fastest reference is the one to beat
        other = [k for k in refs if k != best]
        o = other[0] if other else None
        lines.append(
            f"{r['rule']:11} {r['case']:10} {ours:8.2f} {best:>17} {ms[best]:8.2f} "
            f"{ms[best] / ours:6.2f} {(o or '-'):>15} "
            f"{(f'{ms[o]:9.2f}' if o else '        -')} "
            f"{(f'{ms[o] / ours:7.2f}' if o else '      -')} {r['bytes_per_param']:7d} "
            f"{r['gb_per_s']['optforge-numba']:6.1f} {r['gb_per_s']['copy']:9.1f} "
            f"{100 * r['gb_per_s']['optforge-numba'] / r['gb_per_s']['copy']:6.0f}")
    return "\n".join(lines)


def run_and_report(prefix: str, rules, timer, args) -> None:
    """Time ``rules`` with ``timer`` (bench_elementwise's driver), print the table and
    write benchmarks/results/<prefix>-<machine>.json (+ PNG); shared with
    bench_new_entries."""
    info = machine()
    results = run_cases(rules, timer, args, label="ours")
    info["load_avg_at_end"] = os.getloadavg()
    text = table(results)
    print()
    print(describe(info))
    print(text)
    write_results(prefix, {"machine": info, "results": results, "table": text})


def main():
    run_and_report("multistage", ("LAMB", "clip+AdamW"), time_case, arguments())


if __name__ == "__main__":
    main()
