"""The catalogue entries added for issue 15 vs their reference implementations, on CPU.

On one tensor of 1M and of 10M parameters and on 200 tensors of mixed sizes (1k-500k,
seeded; bench_elementwise's set, its 50M case left out), each rule's optforge step
(backend="numba", one kernel call per step for all tensors) against:

* torch.optim (RAdam, Adadelta, ASGD, Rprop, NAdam, Adafactor), with foreach=False and
  foreach=True;
* pytorch-optimizer (Yogi, QHAdam, AdaBelief, AdEMAMix, LaProp, Adan, MARS, AdaBound,
  AdaMod, Tiger: the references of tests/catalogue, with the same flags as those tests'
  first configuration; CAME, SM3, Prodigy, DAdaptAdam: each library's defaults), with
  foreach=False and, where it has one, foreach=True;
* a numba copy kernel moving the bytes the traffic model gives for our step.

SparseAdam is left out: its reference takes sparse gradients (benchmarks/bench_sparse_adam.py
times it on embedding-like rows). Timing as bench_elementwise (its ``time_case``: warmup,
then the median of interleaved, rotated repeats). Prints a table; writes JSON + PNG to
benchmarks/results/new-entries-<machine>.json.
Usage: python benchmarks/bench_new_entries.py [--repeats N] [--rules Yogi,RAdam]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import optforge

sys.path.insert(0, str(Path(__file__).parent))
import bench_elementwise  # noqa: E402
from bench_multistage import run_and_report  # noqa: E402

TORCH_REFERENCE = {"RAdam": dict(lr=1e-3), "Adadelta": dict(lr=1.0), "ASGD": dict(lr=1e-2),
                   "Rprop": dict(lr=1e-2), "NAdam": dict(lr=1e-3), "Adafactor": dict(lr=1e-2)}
# name -> (optforge kwargs, pytorch-optimizer kwargs): the first configuration of the
# rule's test in tests/catalogue (the flags there make both sides the same algorithm)
PO_REFERENCE = {
    "Yogi": (dict(), dict()),
    "QHAdam": (dict(lr=1e-2), dict(lr=1e-2)),
    "AdaBelief": (dict(lr=1e-2), dict(lr=1e-2)),
    "AdEMAMix": (dict(lr=1e-2), dict(lr=1e-2, t_alpha_beta3=None)),
    "LaProp": (dict(lr=1e-2), dict(lr=1e-2)),
    "Adan": (dict(lr=1e-2), dict(lr=1e-2)),
    "MARS": (dict(), dict(optimize_1d=True, mars_type="adamw")),
    "AdaBound": (dict(lr=1e-2), dict(lr=1e-2)),
    "AdaMod": (dict(lr=1e-2), dict(lr=1e-2)),
    "Tiger": (dict(), dict()),
    # scoped-state rules: each side's defaults (their tests compare with plain-torch
    # references written from the papers; the speed table compares the libraries)
    "CAME": (dict(), dict()),
    "SM3": (dict(), dict()),
    "Prodigy": (dict(), dict()),
    "DAdaptAdam": (dict(), dict()),
}
RULES = [*TORCH_REFERENCE, *PO_REFERENCE]


def _po_variant(rule: str, params, foreach: bool):
    """pytorch-optimizer's ``rule``, or None where it has no such foreach path (it refuses
    the flag, or the step fails on it)."""
    import pytorch_optimizer as po
    try:
        return getattr(po, rule)(params, foreach=foreach, **PO_REFERENCE[rule][1])
    except (TypeError, ValueError, NotImplementedError):
        return None


def variants(rule: str, params) -> dict:
    """name -> optimizer over ``params`` (each with its own state)."""
    if rule in TORCH_REFERENCE:
        kw = TORCH_REFERENCE[rule]
        cls = getattr(torch.optim, rule)
        return {"optforge-numba": getattr(optforge, rule)(params, backend="numba", **kw),
                "torch-loop": cls(params, foreach=False, **kw),
                "torch-foreach": cls(params, foreach=True, **kw)}
    out = {"optforge-numba": getattr(optforge, rule)(params, backend="numba",
                                                     **PO_REFERENCE[rule][0]),
           "po-loop": _po_variant(rule, params, foreach=False)}
    foreach = _po_variant(rule, params, foreach=True)
    if foreach is not None and _steps(foreach):
        out["po-foreach"] = foreach
    return {name: opt for name, opt in out.items() if opt is not None}


def _steps(opt) -> bool:
    """Whether ``opt`` takes a step here (a foreach path may fail only when it runs)."""
    snapshot = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    try:
        opt.step()
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    finally:  # the probe step must not move the shared parameters
        with torch.no_grad():
            for p, s in zip((p for g in opt.param_groups for p in g["params"]), snapshot):
                p.copy_(s)
    return True


def time_case(rule, numels, repeats):
    return bench_elementwise.time_case(rule, numels, repeats, make=variants,
                                       per_elem=getattr(optforge, rule).traffic("float32").total)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per variant")
    ap.add_argument("--rules", default="", help="comma-separated subset of " + ",".join(RULES))
    args = ap.parse_args(argv)
    args.quick = True  # bench_elementwise's cases without 50M: 1M, 10M, 200 mixed
    rules = [r for r in args.rules.split(",") if r] or RULES
    run_and_report("new-entries", rules, time_case, args)


if __name__ == "__main__":
    main()
