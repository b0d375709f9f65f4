"""optforge: write an optimizer's update rule as math, get fused kernels and a torch Optimizer.

The public names load lazily (PEP 562): ``import optforge.dsl`` (SymPy only) must not pull
in torch, numba or the catalogue, so the package imports nothing heavy until a name that
needs it is asked for. ``optforge.AdamW`` and every other catalogue class resolve through
the catalogue's registry: registering a class in ``optforge/catalogue/`` is all it takes.
"""
from __future__ import annotations

import importlib

from .dsl import names as _names

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "DSLError": ".dsl", "Rule": ".dsl", "RuleSpec": ".dsl", "cautious": ".dsl",
    "chain": ".dsl", "with_ema": ".dsl",
    "BackendError": ".runtime", "Optimizer": ".runtime",
    "swap_ema": ".runtime.ema",
    "split_matrix_params": ".runtime.routing", "register_rule": ".runtime.routing",
    "cs_binary": ".catalogue.cauchy_schwarz", "cs_one_sided_binary": ".catalogue.cauchy_schwarz",
    "cs_orthogonal": ".catalogue.cauchy_schwarz", "cs_ternary": ".catalogue.cauchy_schwarz",
    # closure-driven optimizers: the runtime evaluates the loss several times per step
    "ArmijoLineSearch": ".multistep", "CGO": ".multistep", "Extragradient": ".multistep",
    "NewtonCG": ".multistep", "OptimisticCGO": ".multistep",
    "LBFGS": ".multistep", "SAM": ".multistep", "Lookahead": ".multistep",
    "ScheduleFreeAdamW": ".multistep", "ScheduleFreeSGD": ".multistep",
    # look-ups by name for config-driven code (pytorch-optimizer's load/create_optimizer)
    "get": ".factory", "create_optimizer": ".factory",
}


_SUBPACKAGES = {"dsl", "compiler", "kernels", "runtime", "distributed", "catalogue", "multistep",
                "cli", "demo", "plots", "factory"}


def _catalogue() -> dict:
    return importlib.import_module(".catalogue", __name__).REGISTRY


# A rule named by a string ("rule": "AdamW" in a param group, a checkpoint) resolves through
# optforge.dsl.names; on a miss it loads the catalogue, the one layer that defines names.
_names.add_loader(lambda: importlib.import_module(".catalogue", __name__))


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBPACKAGES:  # ``import optforge; optforge.runtime...`` as before
        value = importlib.import_module(f".{name}", __name__)
    elif name == "CATALOGUE":
        value = _catalogue()
    elif name == "__all__":
        value = ["__version__", "CATALOGUE", *_EXPORTS, *_catalogue()]
    elif not name.startswith("_") and name in _catalogue():
        value = _catalogue()[name]
    else:
        raise AttributeError(f"module 'optforge' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"CATALOGUE"} | set(_catalogue()))
