"""Run torch's own TestOptimRenewed (torch_test_optim.py, verbatim) against optforge.

torch's tests read their optimizers from ``common_optimizers.optim_db``; we build a
db from torch's own OptimizerInfo entries with ``optim_cls`` swapped for optforge's
class of the same name, install it only while torch_test_optim is imported, and stub
the three sibling test modules it imports (the torch wheel does not ship them; their
tests exercise torch's LR schedulers and SWA helpers, not optimizers).
"""
from __future__ import annotations

import copy
import importlib.util
import sys
import types
from pathlib import Path

import torch.testing._internal.common_optimizers as common_optimizers
from torch.testing._internal.common_utils import TestCase

import optforge

# torch's six optimizers that optforge ships under the same name and semantics
TORCH_NAMED = ("SGD", "Adam", "AdamW", "Adamax", "Adagrad", "RMSprop")


def swapped_db(names=TORCH_NAMED) -> list:
    """torch's OptimizerInfo entries for ``names``, each running optforge's class."""
    db = []
    for info in common_optimizers.optim_db:
        name = info.optim_cls.__name__
        if name in names:
            mine = copy.copy(info)
            mine.optim_cls = getattr(optforge, name)
            db.append(mine)
    missing = set(names) - {i.optim_cls.__name__ for i in db}
    if missing:
        raise LookupError(f"torch's optim_db has no entry for {sorted(missing)}")
    return db


def _stub_sibling_modules() -> None:
    """Empty stand-ins for the test modules torch_test_optim imports but we do not run."""
    stubs = {"optim.test_lrscheduler": "TestLRScheduler",
             "optim.test_optim": "TestDifferentiableOptimizer",
             "optim.test_swa_utils": "TestSWAUtils"}
    package = sys.modules.setdefault("optim", types.ModuleType("optim"))
    package.__path__ = []
    for module_name, class_name in stubs.items():
        if module_name in sys.modules:
            continue
        module = types.ModuleType(module_name)
        # a TestCase without tests: torch_test_optim instantiates TestSWAUtils per device
        setattr(module, class_name, type(class_name, (TestCase,), {}))
        sys.modules[module_name] = module
        setattr(package, module_name.split(".")[1], module)


def load_suite(db: list, module_name: str):
    """Import torch's test module afresh as ``module_name`` with ``db`` as its optim_db."""
    _stub_sibling_modules()
    original = common_optimizers.optim_db
    common_optimizers.optim_db = db
    try:
        path = Path(__file__).resolve().parent / "torch_test_optim.py"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        common_optimizers.optim_db = original
