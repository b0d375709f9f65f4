"""The torch backend's launcher for plans with 8-bit states: the reference.

Per parameter it unpacks each 8-bit state to float32 (kernels/quantized.py), runs the
plan's torch step on those (the plan with the states in float32: the same float32 math
every backend does), and packs the results back, each block with its new absmax. Not one
pass over memory as the compiled kernels are, but the same bits.
"""
from __future__ import annotations

from ..compiler.quant_plan import check_quantizable, float32_plan, written
from .quantized import pack, unpack
from .torch_launcher import TorchLauncher


class QuantizedTorchLauncher:
    checks_tensors = False  # as TorchLauncher: the optimizer checks the states

    def __init__(self, plan):
        self.plan = plan
        self.formats = check_quantizable(plan, "torch")
        self.inner = TorchLauncher(float32_plan(plan))
        self.source = self.inner.source
        self._written = written(plan, self.formats)
        self._slots = [(k, name) for k, name in enumerate(plan.states) if name in self.formats]

    def check(self, params, grads, states, labels=None) -> None:
        """Nothing launcher-specific (see TorchLauncher.check)."""

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None) -> None:
        states = [list(column) for column in states]
        packed = {k: states[k] for k, _ in self._slots}
        for k, name in self._slots:
            states[k] = [unpack(s, self.formats[name], p.shape)
                         for s, p in zip(packed[k], params)]
        self.inner(params, grads, states, scalars)
        for k, name in self._slots:
            if name not in self._written:
                continue
            for target, value in zip(packed[k], states[k]):
                target.copy_(pack(value, self.formats[name]))
