"""Adagrad — Duchi, Hazan & Singer (2011); torch.optim.Adagrad semantics (lr decay, initial sum)."""
from ..dsl import Rule, grad, param, sqrt, state, step
from ._base import CatalogueOptimizer


def adagrad(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
            eps=1e-10, maximize=False):
    p, g, t = param(), grad(), step()
    g = (-g if maximize else g) + weight_decay * p
    total = state("sum", init=initial_accumulator_value, nonnegative=True) + g * g
    clr = lr / (1 + (t - 1) * lr_decay)
    return Rule(p - clr * g / (sqrt(total) + eps), sum=total)


class Adagrad(CatalogueOptimizer):
    """Adaptive per-coordinate step sizes from the sum of squared gradients."""

    rule = adagrad
    source = "Duchi, Hazan & Singer (2011), JMLR 12; torch.optim.Adagrad"
    torch_flags = {"foreach": None, "differentiable": False, "fused": None}
    # torch's sparse path updates only the gradient's entries; with weight_decay = 0 the
    # dense step leaves the others unchanged too (g = 0 there), so they agree
    supports_sparse_grads = True

    def check_parameter(self, p, labels, j: int, compiled) -> None:
        super().check_parameter(p, labels, j, compiled)
        if p.grad.is_sparse and float(self.param_groups[labels.group]["weight_decay"]) != 0:
            raise RuntimeError(f"Adagrad: {labels[j]}: "
                               "weight_decay option is not compatible with sparse gradients")
