"""SGD with momentum, dampening, Nesterov, weight decay and maximize — torch.optim.SGD semantics.

Robbins & Monro (1951); heavy-ball momentum (Polyak, 1964); Nesterov (1983) in the
form of Sutskever et al. (2013), as torch.optim.SGD implements them. Like torch,
the momentum buffer starts as the first gradient (undamped), and there is no
buffer at all when ``momentum == 0``.
"""
from ..dsl import Rule, grad, param, specialize_on_zero, state, step, where
from ._base import CatalogueOptimizer


@specialize_on_zero("momentum")
def sgd(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False):
    p, g, t = param(), grad(), step()
    d = (-g if maximize else g) + weight_decay * p
    if momentum == 0:
        return Rule(p - lr * d)
    buf = momentum * state("momentum_buffer") + (1 - where(t > 1, dampening, 0)) * d
    update = d + momentum * buf if nesterov else buf
    return Rule(p - lr * update, momentum_buffer=buf)


class SGD(CatalogueOptimizer):
    """Stochastic gradient descent (torch.optim.SGD semantics)."""

    rule = sgd
    source = "torch.optim.SGD; Polyak (1964); Sutskever et al. (2013)"
    torch_flags = {"foreach": None, "differentiable": False, "fused": None}
    supports_sparse_grads = True  # a zero gradient entry moves nothing: the dense step

    def check_group(self, group: dict, where: str) -> None:
        super().check_group(group, where)
        if group["nesterov"] and (float(group["momentum"]) <= 0
                                  or float(group["dampening"]) != 0):
            raise ValueError(f"{type(self).__name__}: Nesterov momentum requires a momentum "
                             "and zero dampening")
