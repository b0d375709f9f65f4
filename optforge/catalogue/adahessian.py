"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney (2020), "ADAHESSIAN: An
Adaptive Second Order Optimizer for Machine Learning", arXiv:2006.00719), with
pytorch-optimizer's (4.x) conventions for weight decay and the update period.

    h_t = z ⊙ (H z)                 Hutchinson probe, the runtime's given("hutchinson")
    m_t = β1 m + (1 - β1) g         g += wd p first when weight decay is coupled
    v_t = β2 v + (1 - β2) h_t²      only on Hessian steps (t - 1) mod update_period == 0;
                                    between them v is kept as it is (pytorch-optimizer)
    p  <- p (1 - lr wd) - lr / (1 - β1^t) · m_t / ((v_t / (1 - β2^t))^(k/2) + eps)

``spatial_average=True`` reads ``given("hutchinson_spatial")``: a 4-D convolution
kernel's |h| averaged over its spatial dims (the paper's Sec. 3.3; pytorch-optimizer has no
such option). ``num_samples`` probes are averaged per estimate. ``hessian_update`` is set by
``step()`` from ``update_period`` each step: on other steps the rule does not read the
estimate, so no Hessian-vector product is computed.

Note: the paper's reference code (and the brief "reuse the last estimate") keeps feeding the
last estimate to v between Hessian steps; pytorch-optimizer freezes v instead, which is what
this rule does (with ``update_period=1`` the two agree).
"""
from ..dsl import Rule, given, grad, param, state, step
from ..runtime import providers  # noqa: F401 - registers "hutchinson" and friends
from ..runtime.providers import due
from ._base import CatalogueOptimizer


def adahessian(lr=0.1, betas=(0.9, 0.999), weight_decay=0.0, hessian_power=1.0, eps=1e-16,
               update_period=1, num_samples=1, weight_decouple=True, fixed_decay=False,
               spatial_average=False, hessian_update=True):
    p, g, t = param(), grad(), step()
    beta1, beta2 = betas
    m, v = state("exp_avg"), state("exp_hessian_diag_sq")
    if weight_decouple:
        p = p * (1 - weight_decay * (1 if fixed_decay else lr))
    else:
        g = g + weight_decay * p
    m1 = beta1 * m + (1 - beta1) * g
    if hessian_update:
        h = given("hutchinson_spatial" if spatial_average else "hutchinson")
        v1 = beta2 * v + (1 - beta2) * h * h
    else:
        v1 = v
    denom = (v1 / (1 - beta2**t)) ** (hessian_power / 2) + eps
    return Rule(p - lr / (1 - beta1**t) * m1 / denom, exp_avg=m1, exp_hessian_diag_sq=v1)


class AdaHessian(CatalogueOptimizer):
    """Adam with the squared Hutchinson Hessian diagonal in place of the squared gradient.

    Needs ``loss.backward(create_graph=True)`` before ``step()``, or ``step(closure)``.
    """

    rule = adahessian
    source = ("Yao et al. (2020), arXiv:2006.00719; "
              "pytorch-optimizer AdaHessian (weight decay, update_period)")

    def step(self, closure=None, inputs=None):
        for group in self.param_groups:
            group["hessian_update"] = due(self, group, "update_period")
        return super().step(closure, inputs)
