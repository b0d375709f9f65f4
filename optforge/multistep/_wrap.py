"""What SAM and Lookahead share: they wrap a *base* optimizer and own no param groups.

The base may be given built (any ``torch.optim.Optimizer``: optforge or torch) or as
something to build over ``params``: an optimizer class (``optforge.AdamW``,
``torch.optim.SGD``) or an optforge rule (a rule function or ``RuleSpec``, compiled by
``optforge.Optimizer``). The wrapper's ``param_groups`` *are* the base's, so an lr
scheduler attached to either sees the same ``lr``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..dsl.spec import RuleSpec

_HOOK_TABLES = ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks")


def build_base(owner: str, params, base, kwargs: dict) -> torch.optim.Optimizer:
    """The base optimizer from (params, base, its keyword arguments); see the module doc."""
    if isinstance(base, torch.optim.Optimizer):
        if kwargs:
            raise TypeError(f"{owner}: hyperparameters {sorted(kwargs)} were given for an "
                            "optimizer that is already built; set them on it instead")
        if params is not None:
            given = {id(p) for p in _flatten(params)}
            owned = {id(p) for g in base.param_groups for p in g["params"]}
            if given != owned:
                raise ValueError(f"{owner}: params are not the base optimizer's parameters; "
                                 "pass params=None with a built optimizer")
        return base
    if params is None:
        raise TypeError(f"{owner}: params is None, so the base must be a built optimizer, "
                        f"got {base!r}")
    if isinstance(base, type) and issubclass(base, torch.optim.Optimizer):
        return base(params, **kwargs)
    if isinstance(base, RuleSpec) or (callable(base) and not isinstance(base, type)):
        from ..runtime.optimizer import Optimizer  # a rule function: compile it
        return Optimizer(params, base, **kwargs)
    raise TypeError(f"{owner}: base must be a torch.optim.Optimizer (built, or its class) or "
                    f"an optforge rule function, got {type(base).__name__}")


def _flatten(params) -> list:
    if isinstance(params, torch.Tensor):
        return [params]
    out = []
    for item in params:
        out += list(item["params"]) if isinstance(item, dict) else [item]
    return out


def params_with_grad(base) -> list[torch.Tensor]:
    return [p for g in base.param_groups for p in g["params"] if p.grad is not None]


class WrappedOptimizer(torch.optim.Optimizer):
    """Delegates groups, ``zero_grad`` and ``add_param_group`` to ``self.base``.

    torch.optim.Optimizer.__init__ would build param groups of its own; only the hook tables
    it expects are set up, so ``register_step_pre_hook`` and friends still work.
    """

    def _init_wrapper(self, base: torch.optim.Optimizer, **own) -> None:
        self.base = base
        self.defaults = dict(base.defaults, **own)
        for name in _HOOK_TABLES:
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    @property
    def param_groups(self):
        return self.base.param_groups

    @param_groups.setter
    def param_groups(self, value):  # torch's load_state_dict assigns it
        self.base.param_groups = value

    def __getstate__(self) -> dict:
        # torch's keeps only defaults/state/param_groups; a wrapper is its base and settings
        # (less an lr scheduler's instance-level wrapper of ``step``, which is not picklable)
        return {k: v for k, v in self.__dict__.items() if k != "step"}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        self.base.add_param_group(param_group)

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._own_keys)
        return f"{type(self).__name__}({own}, base={self.base!r})"
