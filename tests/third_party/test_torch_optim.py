"""torch's TestOptimRenewed (CPU) against optforge's six torch-named optimizers.

Every test torch runs on CPU for SGD, Adam, AdamW, Adamax, Adagrad and RMSprop runs
here with ``optim_cls`` swapped for optforge's class (see torch_suite.py). The skips
torch's own OptimizerInfo entries carry apply unchanged; the tests deselected below
are listed with their reasons.
"""
import pytest

from torch_suite import load_suite, swapped_db

_suite = load_suite(swapped_db(), "torch_test_optim_six")

# Tests that construct torch's classes directly (or test torch internals), so they say
# nothing about optforge; they are not collected.
NOT_OPTFORGE = {
    "test_adamw_serialization": "builds torch.optim.Adam/AdamW itself",
    "test_step_iteration": "builds torch.optim.SGD itself",
}


class TestOptimRenewedCPU(_suite.TestOptimRenewedCPU):
    pass


for _name in list(vars(_suite.TestOptimRenewedCPU)):
    if any(_name.startswith(prefix) for prefix in NOT_OPTFORGE):
        setattr(TestOptimRenewedCPU, _name, None)
