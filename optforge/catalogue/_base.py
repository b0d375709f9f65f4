"""The base of every catalogue optimizer: a fixed rule, torch-style constructor."""
from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..compiler import lower, traffic
from ..compiler.passes.traffic import dtype_bytes
from ..dsl import names
from ..dsl.spec import RuleSpec
from ..runtime.optimizer import Optimizer
from ..runtime.state import state_shape
from ..runtime.storage_options import stored_rule

REGISTRY: dict[str, type["CatalogueOptimizer"]] = {}


class CatalogueOptimizer(Optimizer):
    """Subclasses set ``rule`` (a rule function) and ``source`` (paper or torch.optim reference).

    Positional arguments after ``params`` follow the rule's hyperparameter order, as
    torch's constructors do: ``AdamW(model.parameters(), 1e-3)`` sets ``lr``.
    """

    rule: ClassVar[RuleSpec]
    source: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "rule" in cls.__dict__:
            # a plain function would become a bound method on instances: wrap it once
            cls.rule = RuleSpec(cls.__dict__["rule"], name=cls.__name__)
            REGISTRY[cls.__name__] = cls
            names.register_catalogue(cls.__name__, cls.rule)  # "rule": "AdamW" resolves

    def __init__(self, params, *args, backend: str = "auto", skip_nonfinite: bool = False,
                 seed: int = 0, **hyper):
        keys = list(self.rule.defaults)
        if len(args) > len(keys):
            raise TypeError(f"{type(self).__name__} takes at most {len(keys)} positional "
                            f"hyperparameters ({', '.join(keys)}), got {len(args)}")
        for key, value in zip(keys, args):
            if key in hyper:
                raise TypeError(f"{type(self).__name__}: {key!r} given twice")
            hyper[key] = value
        super().__init__(params, self.rule, backend=backend, skip_nonfinite=skip_nonfinite,
                         seed=seed, **hyper)

    @classmethod
    def state_bytes_per_param(cls, param_dtype: str = "float32", **flags) -> float:
        """Bytes of optimizer state per parameter element (``flags`` pick a variant and
        may hold storage options: ``state_dtype="bfloat16"``, ``param_rounding="kahan"``;
        8-bit states count their code and their share of the block scale, 1 + 4 / block,
        for tensors large enough to be quantized)."""
        rule = stored_rule(cls.rule, {**cls.rule.defaults, **flags})
        return sum(dtype_bytes(d.dtype or param_dtype) for d in rule.states.values()
                   if d.kind == "state")  # inputs are not stored; matrix and scoped states
        #                              are not per element (``state_bytes(shape)`` counts them)

    @classmethod
    def scoped_states(cls, **flags) -> dict[str, str]:
        """The states that are not one value per element: name -> scope ("row", "col",
        "tensor", "group", "optimizer"), from ``state(name, scope=...)``."""
        rule = stored_rule(cls.rule, {**cls.rule.defaults, **flags})
        return {n: d.scope for n, d in rule.states.items() if d.kind == "scoped"}

    @classmethod
    def state_bytes(cls, shape: tuple, param_dtype: str = "float32", **flags) -> int:
        """Bytes of optimizer state (``step`` aside) for one parameter of ``shape``: per-
        element states numel values each, a row/column state rows / cols values, a
        tensor/group/optimizer one 1, matrix states their rows x cols."""
        rule = stored_rule(cls.rule, {**cls.rule.defaults, **flags})
        like = torch.empty(shape, device="meta")
        return sum(dtype_bytes(d.dtype or param_dtype) * math.prod(state_shape(d, like))
                   for d in rule.states.values() if d.stored)

    @classmethod
    def traffic(cls, param_dtype: str = "float32", **flags):
        """Bytes read and written per parameter element by one step (``flags`` as in
        ``state_bytes_per_param``)."""
        rule = stored_rule(cls.rule, {**cls.rule.defaults, **flags})
        return traffic(lower(rule, cls.rule.hyper_symbols), param_dtype)

    @classmethod
    def latex(cls, **flags) -> str:
        return cls.rule.build(cls.rule.variant_of({**cls.rule.defaults, **flags})).latex()
