"""optforge: write an optimizer's update rule as math, get fused kernels and a torch Optimizer."""
__version__ = "0.1.0"

from .dsl import DSLError, Rule, RuleSpec, cautious, chain, with_ema  # noqa: E402
from .runtime import BackendError, Optimizer  # noqa: E402
from .runtime.ema import swap_ema  # noqa: E402
from .runtime.routing import split_matrix_params  # noqa: E402
from .catalogue import REGISTRY as CATALOGUE  # noqa: E402
from .catalogue.cauchy_schwarz import (cs_binary, cs_one_sided_binary, cs_orthogonal,  # noqa: E402
                                       cs_ternary)
# closure-driven optimizers: the runtime evaluates the loss several times per step
from .multistep import ArmijoLineSearch, CGO, Extragradient, NewtonCG, OptimisticCGO  # noqa: E402

# Every catalogue optimizer is importable as optforge.<Name> (optforge.AdamW, optforge.LAMB...):
# registering a class in optforge/catalogue/ is all it takes.
globals().update(CATALOGUE)
from .factory import create_optimizer, get  # noqa: E402  (needs the catalogue)

__all__ = ["__version__", "Optimizer", "Rule", "RuleSpec", "chain", "cautious", "with_ema", "swap_ema", "DSLError",
           "BackendError", "CATALOGUE", "cs_binary", "cs_ternary", "cs_one_sided_binary", "cs_orthogonal", "split_matrix_params",
           "ArmijoLineSearch", "Extragradient", "CGO", "OptimisticCGO", "NewtonCG",
           "get", "create_optimizer", *CATALOGUE]
