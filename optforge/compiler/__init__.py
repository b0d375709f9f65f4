"""HOW a rule becomes code: plans, passes and printers. Never touches a device."""
from .errors import CompileError
from .lower import lower
from .passes.traffic import Traffic, traffic
from .plan import KernelPlan, TensorRef

__all__ = ["CompileError", "KernelPlan", "TensorRef", "Traffic", "lower", "traffic"]
