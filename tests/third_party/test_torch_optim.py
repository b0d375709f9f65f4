"""torch's TestOptimRenewed (CPU) against optforge's six torch-named optimizers.

Every test torch runs on CPU for SGD, Adam, AdamW, Adamax, Adagrad and RMSprop runs
here with ``optim_cls`` swapped for optforge's class (see torch_suite.py).

Skips: none added by optforge. Those reported are torch's own, for tests that do not run
on CPU (onlyCUDA / onlyAccelerator / "Only runs on cuda" / largeTensorTest, and the fused
tests on devices outside an optimizer's ``supports_fused_on``), exactly as torch skips them
for torch.optim on CPU. Not collected (listed in NOT_OPTFORGE below): the two tests that
construct torch's classes themselves and so test torch.optim, not optforge.
"""
import pytest

from torch_suite import load_suite, swapped_db

_suite = load_suite(swapped_db(), "torch_test_optim_six")

# Tests that construct torch's classes directly (or test torch internals), so they say
# nothing about optforge; they are not collected.
NOT_OPTFORGE = {
    "test_adamw_serialization": "builds torch.optim.AdamW and torch.optim.Adam itself",
    "test_step_iteration": "builds torch.optim.SGD itself (checks torch's step counter)",
}

# 1800 steps of two optimizers per configuration: minutes on 2 cores, so `make test-slow`
SLOW = ("test_rosenbrock_sparse",)


class TestOptimRenewedCPU(_suite.TestOptimRenewedCPU):
    pass


for _name in list(vars(_suite.TestOptimRenewedCPU)):
    if any(_name.startswith(prefix) for prefix in NOT_OPTFORGE):
        setattr(TestOptimRenewedCPU, _name, None)
    elif _name.startswith(SLOW):
        setattr(TestOptimRenewedCPU, _name,
                pytest.mark.slow(getattr(_suite.TestOptimRenewedCPU, _name)))
