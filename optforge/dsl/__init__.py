"""The rule DSL: write an optimizer step as math over symbols. Imports no torch."""
from .errors import DSLError
from .cast import cast
from .functions import (abs, clamp, eq, exp, lerp, log, maximum, minimum, ne, pow, rsqrt, sign,
                        sqrt, where)
from .reductions import amax, count, dot, mean, ndim, norm, numel, total
from .reductions import total as sum  # noqa: A001 - the DSL mirrors torch's names
from .inputs import given
from .collectives import allreduce, majority_vote
from .matrix import (add_diagonal, batch_mean, batch_size, diagonal, eigenvectors, every, fnorm,
                     inv_root, inverse, layer_input, layer_output_grad, matmul, matrix_state,
                     orthogonalize, power_iteration, sherman_morrison, solve, trace as matrix_trace,
                     transpose)
from .randomness import random_scalar
from .latex import named
from .rule import Rule
from .spec import RuleSpec, specialize_on_zero
from .symbols import grad, initial_lr, param, state, step
from .transforms import (Transform, add_decayed_weights, cautious_mask, clip_by_global_norm,
                         scale, scale_by_adam, scale_by_lr, scale_by_rms, scale_by_sign, trace)
from .combine import cautious, chain, with_ema

__all__ = [
    "DSLError", "Rule", "RuleSpec", "named", "specialize_on_zero", "param", "grad", "step", "state",
    "initial_lr",
    "sqrt", "rsqrt", "abs", "sign", "exp", "log", "pow", "maximum", "minimum", "clamp",
    "lerp", "where", "cast", "eq", "ne", "norm", "dot", "mean", "amax", "total", "sum", "numel", "ndim", "count", "matmul", "transpose",
    "orthogonalize", "Transform", "chain", "scale_by_adam", "scale_by_rms", "scale_by_sign",
    "trace", "add_decayed_weights", "scale_by_lr", "scale", "clip_by_global_norm", "cautious",
    "cautious_mask", "random_scalar", "with_ema", "given", "matrix_state", "inv_root",
    "inverse", "solve", "sherman_morrison", "eigenvectors", "power_iteration", "add_diagonal",
    "diagonal", "matrix_trace", "fnorm", "batch_mean", "batch_size", "every", "layer_input",
    "layer_output_grad", "allreduce", "majority_vote",
]
