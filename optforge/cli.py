"""The ``optforge`` command: inspect rules and the code they compile to, run the demo.

    optforge list [NAME] [--family F]      the catalogue by family: hyperparameters, state,
                  [--json|--markdown]  traffic (a name substring and a family filter it)
    optforge show AdamW [--backend numba]  a rule as math, its plan and generated code
    optforge show examples/adabelief.py:adabelief --set amsgrad=true
    optforge latex Lion                    the rule as a LaTeX ``aligned`` block
    optforge demo [--plot DIR]             train a small model with torch and optforge
    optforge tune [AdamW Lion ...]         pre-tune the triton kernels for this GPU
"""
from __future__ import annotations

import argparse
import json
import importlib
import importlib.util
import sys
from pathlib import Path

from .dsl import DSLError, RuleSpec


class CLIError(Exception):
    """A problem with the command line, reported without a traceback."""


def resolve_rule(text: str) -> RuleSpec:
    """A catalogue name (any case), ``path/to/file.py:function`` or ``module:function``."""
    from .catalogue import REGISTRY
    by_lower = {name.lower(): cls for name, cls in REGISTRY.items()}
    if text.lower() in by_lower:
        return by_lower[text.lower()].rule
    if ":" not in text:
        from .catalogue.families import did_you_mean
        raise CLIError(f"unknown rule {text!r}{did_you_mean(text, REGISTRY)}: not in the "
                       "catalogue (`optforge list`) and not of the form file.py:function or "
                       "module:function")
    where, _, fn_name = text.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise CLIError(f"rule file {where!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"optforge_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise CLIError(f"cannot import module {where!r}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise CLIError(f"{where!r} defines no {fn_name!r}")
    return fn if isinstance(fn, RuleSpec) else RuleSpec(fn)


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        raise CLIError(f"--set value {text!r} is neither a number nor true/false") from None


def _variant(spec: RuleSpec, settings: list[str]):
    """The rule variant selected by ``--set key=value`` options (flags such as amsgrad)."""
    group = dict(spec.defaults)
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--set expects key=value, got {item!r}")
        if key not in group:
            raise CLIError(f"rule {spec.name!r} has no hyperparameter {key!r}; "
                           f"known: {', '.join(spec.defaults)}")
        group[key] = _parse_value(value)
    return spec.variant_of(group)


def cmd_list(args) -> None:
    if args.markdown:
        from .catalogue.reference import catalogue_markdown
        print(catalogue_markdown())
        return
    from .catalogue.listing import entry, render, select
    try:
        names = select(args.family, args.pattern)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps([entry(n) for n in names], indent=1))
    else:
        print(render(names))


def cmd_show(args) -> None:
    from .compiler import lower, traffic
    from .kernels.registry import BACKENDS
    spec = resolve_rule(args.rule)
    rule = spec.build(_variant(spec, args.set))
    plan = lower(rule, spec.hyper_symbols)
    print(f"# rule {spec.name}: hyperparameters "
          + ", ".join(f"{k}={v}" for k, v in spec.defaults.items()))
    print(rule.pretty() if args.pretty else str(rule))
    print()
    print(plan.describe())
    t = traffic(plan)
    print(f"# traffic (float32 params): {t.read} B read + {t.written} B written "
          f"= {t.total} B per parameter")
    if args.backend:
        if args.backend not in BACKENDS:
            raise CLIError(f"unknown backend {args.backend!r}; available here: "
                           + ", ".join(BACKENDS))
        print(f"\n# generated {args.backend} code\n")
        print(BACKENDS[args.backend].source(plan))


def cmd_latex(args) -> None:
    spec = resolve_rule(args.rule)
    print(spec.build(_variant(spec, args.set)).latex())


def cmd_demo(args) -> None:
    from .demo import run_demo
    run_demo(steps=args.steps, plot_dir=args.plot)


def cmd_tune(args) -> None:
    from .catalogue.tuning import tune_catalogue
    from .kernels.triton.autotune import default_tuner
    try:
        results = tune_catalogue(args.rules or None, progress=True)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    for (rule, dtype, size), config in results.items():
        print(f"{rule:10s} {dtype:9s} {size:16s} {config}")
    path = default_tuner().path  # None: no private directory could be written
    print(f"(saved in {path})" if path else "(kept in memory: no writable private cache)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optforge", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the catalogue")
    listing.add_argument("pattern", nargs="?", help="only names containing this (any case)")
    listing.add_argument("--family", help="only this family: classic, adaptive, trust-ratio, "
                         "sign, matrix, second-order, game/online, constrained")
    listing.add_argument("--json", action="store_true", help="records for tools: "
                         "hyperparameters, state bytes, traffic, source")
    listing.add_argument("--markdown", action="store_true",
                         help="the full reference page with formulas (docs/catalogue.md)")
    listing.set_defaults(run=cmd_list)
    for name, run, help_text in (("show", cmd_show, "a rule, its plan and generated code"),
                                 ("latex", cmd_latex, "a rule as LaTeX")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("rule", help="catalogue name, file.py:function or module:function")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="select a variant, e.g. --set amsgrad=true (repeatable)")
        p.set_defaults(run=run)
        if name == "show":
            p.add_argument("--backend", help="also print this backend's generated code")
            p.add_argument("--pretty", action="store_true", help="2-D unicode math")
    tune = sub.add_parser("tune", help="pre-tune triton kernels of catalogue rules for this GPU")
    tune.add_argument("rules", nargs="*", help="catalogue names (default: all)")
    tune.set_defaults(run=cmd_tune)
    demo = sub.add_parser("demo", help="train a small model with torch.optim and optforge")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--plot", metavar="DIR", help="also write loss-curve PNGs here "
                      "(and train a few catalogue optimizers for them); needs matplotlib")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CLIError, DSLError) as exc:
        print(f"optforge: error: {exc}", file=sys.stderr)
        return 2
    return 0
