"""Layer statistics for K-FAC-like rules: ``optimizer.attach(model)``.

Forward hooks record each layer's input and hook its output, whose gradient (the loss's
gradient with respect to the layer output) is recorded on backward; rules read them with ``layer_input()`` ``(batch, cols)`` and
``layer_output_grad()`` ``(batch, rows)`` for the layer's weight, whose 2-D view is
``(rows, cols)``:

* ``nn.Linear(in, out)``: weight ``(out, in)``; inputs ``(N, in)``, output grads
  ``(N, out)`` (leading dimensions such as a sequence are folded into N);
* ``nn.Conv2d``: weight ``(out, in, kh, kw)`` viewed as ``(out, in*kh*kw)``; inputs
  unfolded to patches ``(N*L, in*kh*kw)``, output grads ``(N*L, out)`` (L positions).

Only the last forward/backward pass is kept (detached). A rule that reads them for a
parameter no attached layer owns, or before any backward pass, gets an error naming it.
"""
from __future__ import annotations

import torch
from torch import nn

from .inputs import InputError, register_provider

SUPPORTED = (nn.Linear, nn.Conv2d)


class LayerStats:
    """Hooks on every supported layer of ``model``; ``remove()`` detaches them."""

    def __init__(self, model: nn.Module):
        self.owner: dict[int, nn.Module] = {}  # id(weight) -> layer
        self.inputs: dict[int, torch.Tensor] = {}
        self.output_grads: dict[int, torch.Tensor] = {}
        self._handles = []
        for layer in model.modules():
            if not isinstance(layer, SUPPORTED):
                continue
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                raise ValueError(f"attach: {layer} has groups={layer.groups}; layer statistics "
                                 "support ungrouped convolutions only")
            self.owner[id(layer.weight)] = layer
            self._handles.append(layer.register_forward_hook(self._record))
        if not self.owner:
            raise ValueError(f"attach: {type(model).__name__} has no nn.Linear or nn.Conv2d "
                             "layer to record statistics from")

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _record(self, layer, args, output) -> None:
        """Keep the input; hook the output so its gradient is kept on backward (a tensor
        hook, not a module backward hook: no warning when inputs need no gradient)."""
        if output.requires_grad:
            output.register_hook(lambda g, layer=layer: self._record_output_grad(layer, g))
        x = args[0].detach()
        if isinstance(layer, nn.Conv2d):
            patches = nn.functional.unfold(x, layer.kernel_size, layer.dilation, layer.padding,
                                           layer.stride)  # (N, in*kh*kw, L)
            x = patches.transpose(1, 2)
        self.inputs[id(layer.weight)] = x.reshape(-1, x.shape[-1])

    def _record_output_grad(self, layer, grad_output) -> None:
        g = grad_output.detach()
        if isinstance(layer, nn.Conv2d):
            g = g.flatten(2).transpose(1, 2)  # (N, L, out)
        self.output_grads[id(layer.weight)] = g.reshape(-1, g.shape[-1])

    def get(self, which: str, p: torch.Tensor, where: str) -> torch.Tensor:
        table = self.inputs if which == "layer_input" else self.output_grads
        if id(p) not in self.owner:
            raise InputError(f"{where}: {which}() is recorded for weights of nn.Linear / "
                             f"nn.Conv2d layers of the attached model; this parameter "
                             f"{tuple(p.shape)} is not one (route it to another rule)")
        if id(p) not in table:
            raise InputError(f"{where}: no {which} recorded yet for this weight "
                             f"{tuple(p.shape)}: run a forward and backward pass first")
        return table[id(p)]


def _provider(which: str):
    def provide(optimizer, group, params, closure):
        stats = getattr(optimizer, "layer_stats", None)
        name = f"{type(optimizer).__name__} ({optimizer.spec.name})"
        if stats is None:
            raise InputError(f"{name}: the rule reads {which}(); call optimizer.attach(model) "
                             "before training so the layer statistics are recorded")
        return [stats.get(which, p, name) for p in params]
    return provide


register_provider("layer_input", _provider("layer_input"))
register_provider("layer_output_grad", _provider("layer_output_grad"))
