"""What Adafactor and the original Adafactor share beyond their rules: torch's conventions.

* ``eps=(None, 1e-3)`` (torch's default, also in its checkpoints): None is the float32
  machine epsilon, torch's ``finfo(param.dtype).eps`` for float32 parameters;
* a parameter with more than 2 dimensions is refused, naming it (see adafactor.py);
* a vector's (or scalar's) second moment is ``row_var`` here and ``variance`` in torch,
  which keeps no ``col_var`` for it: ``state_dict`` writes torch's layout and
  ``load_state_dict`` reads either (the unused column value restarts at 0).
"""
from __future__ import annotations

import torch

from ..runtime.state import scoped_shape

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def _eps(value):
    """eps with torch's None for eps1 resolved (anything else is checked as usual)."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] is None:
        return (FLOAT32_EPS, value[1])
    return value


def _with_eps(group: dict) -> dict:
    return {**group, "eps": _eps(group["eps"])} if "eps" in group else group


class FactoredOptimizer:
    """Mixin for a catalogue class whose rule keeps ``row_var`` / ``col_var``."""

    def __init__(self, params, *args, **hyper):
        super().__init__(params, *args, **_with_eps(hyper))

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(_with_eps(param_group))

    def check_parameter(self, p, labels, j: int, compiled) -> None:
        if p.dim() > 2:
            raise ValueError(
                f"{type(self).__name__}: {labels[j]} has shape {tuple(p.shape)}; torch's "
                "Adafactor factors the last two dimensions once per leading index, which "
                "optforge's row/column states (of the (shape[0], -1) view) do not express: "
                "reshape it to 2-D or give it another rule (a param group with \"rule\")")
        super().check_parameter(p, labels, j, compiled)

    def state_dict(self) -> dict:
        saved = super().state_dict()
        for group, packed in zip(self.param_groups, saved["param_groups"]):
            for p, key in zip(group["params"], packed["params"]):
                state = saved["state"].get(key)
                if p.dim() < 2 and state and "row_var" in state:
                    state = {k: v for k, v in state.items() if k not in ("row_var", "col_var")}
                    saved["state"][key] = {**state, "variance": saved["state"][key]["row_var"]}
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        if not (isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict)
                and isinstance(state_dict.get("param_groups"), (list, tuple))):
            return super().load_state_dict(state_dict)  # refused there, with its message
        states = dict(state_dict["state"])
        for group, packed in zip(self.param_groups, state_dict["param_groups"]):
            packed_params = packed.get("params", ()) if isinstance(packed, dict) else ()
            for p, key in zip(group["params"], packed_params):
                state = states.get(key)
                if isinstance(state, dict) and "variance" in state and "row_var" not in state:
                    variance = state["variance"]
                    col = torch.zeros(scoped_shape(_COL, p), dtype=getattr(
                        variance, "dtype", p.dtype), device=p.device)
                    states[key] = {**{k: v for k, v in state.items() if k != "variance"},
                                   "row_var": variance, "col_var": col}
        groups = [_with_eps(g) if isinstance(g, dict) else g for g in state_dict["param_groups"]]
        return super().load_state_dict({**state_dict, "state": states, "param_groups": groups})


class _ColDecl:  # scoped_shape reads only ``scope``
    scope = "col"


_COL = _ColDecl()
