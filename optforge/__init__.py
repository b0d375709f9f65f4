"""optforge: write an optimizer's update rule as math, get fused kernels and a torch Optimizer."""
__version__ = "0.1.0"

from .dsl import DSLError, Rule, RuleSpec, chain  # noqa: E402
from .runtime import BackendError, Optimizer  # noqa: E402
from .catalogue import (  # noqa: E402
    SGD, Adagrad, Adam, Adamax, AdamW, Lion, RMSprop, Signum, REGISTRY as CATALOGUE,
    COCOB, EXAdam, FTRL, LionKappaClamp, LionKappaIdentity, LionKappaSign, OptimisticGD,
    ProxSGDBox, ProxSGDL1, ProxSGDNonNeg,
)

__all__ = ["__version__", "Optimizer", "Rule", "RuleSpec", "chain", "DSLError", "BackendError",
           "CATALOGUE", "SGD", "Adam", "AdamW", "Adamax", "Adagrad", "RMSprop", "Lion", "Signum",
           "LionKappaSign", "LionKappaIdentity", "LionKappaClamp", "EXAdam", "ProxSGDL1",
           "ProxSGDBox", "ProxSGDNonNeg", "OptimisticGD", "FTRL", "COCOB"]
