"""SophiaH (Liu, Li, Hall, Liang & Ma (2023), "Sophia: A Scalable Stochastic Second-order
Optimizer for Language Model Pre-training", arXiv:2305.14342), its Hutchinson variant,
with pytorch-optimizer's (3.x/4.x) ``SophiaH`` parametrisation and conventions: momentum
divided by an EMA of Hutchinson's Hessian-diagonal estimate, refreshed every k steps, each
entry of the step clipped to [-clip, clip].

    m_t = β1 m + (1 - β1) g                 g += wd p first when weight decay is coupled
    ĥ_t = u ⊙ (H u)                         Hutchinson estimate, u ~ N(0, I) (rademacher:
                                            u uniform on {-1, +1})
    h_t = β2 h + (1 - β2) ĥ_t               only on Hessian steps (t - 1) mod k == 0;
                                            between them h is kept as it is
    p  <- p (1 - lr wd) - lr · clip(m_t / max(h_t, eps), ρ)

with clip(x, ρ) = max(min(x, ρ), -ρ) elementwise and ρ the hyperparameter ``clip``
(pytorch-optimizer's ``p``: that name is the parameter's in optforge's DSL). The paper
writes the step as θ <- θ - η λ θ - η · clip(m / max(γ h, ε), 1) (its Algorithm 3); since
lr · clip(x, ρ) = lr ρ · clip(x / ρ, 1), that is this update with γ = ρ, ε = ρ eps,
η = lr ρ and λ = wd / ρ (tests/catalogue/test_sophia.py checks it term for term).
Neither bias-corrects the moments.

``hessian_update`` is set by ``step()`` from ``update_period`` each step (as AdaHessian's):
on other steps the rule does not read the estimate, so no Hessian-vector product is
computed. ``num_samples`` probes are averaged per estimate. Probes come from the runtime's
seeded generator (``runtime/providers.probe_seed``): a run is reproducible, and
``torch.manual_seed(probe_seed(seed, t))`` before pytorch-optimizer's step t gives it the
same probes.
"""
from ..dsl import Rule, clamp, given, grad, lerp, maximum, param, state
from ..runtime import providers  # noqa: F401 - registers the Hutchinson inputs
from ..runtime.providers import due
from ._base import CatalogueOptimizer


def sophia_h(lr=6e-2, betas=(0.96, 0.99), weight_decay=0.0, weight_decouple=True,
             fixed_decay=False, clip=1e-2, update_period=10, num_samples=1, eps=1e-12,
             maximize=False, rademacher=False, hessian_update=True):
    w, g = param(), grad()
    beta1, beta2 = betas
    g = -g if maximize else g
    if weight_decouple:
        w = w * (1 - weight_decay * (1 if fixed_decay else lr))
    else:
        g = g + weight_decay * w
    m = lerp(state("momentum"), g, 1 - beta1)
    h = state("hessian_moment")
    if hessian_update:
        h = lerp(h, given("hutchinson" if rademacher else "hutchinson_gaussian"), 1 - beta2)
    update = clamp(m / maximum(h, eps), -clip, clip)
    return Rule(w - lr * update, momentum=m, hessian_moment=h)


class SophiaH(CatalogueOptimizer):
    """Momentum preconditioned by an EMA of Hutchinson's Hessian diagonal, refreshed every
    ``update_period`` steps, with the preconditioned step clipped elementwise to ``clip``.

    Needs ``loss.backward(create_graph=True)`` before ``step()``, or ``step(closure)``.
    """

    rule = sophia_h
    source = ("Liu et al. (2023), arXiv:2305.14342 (Sophia-H); "
              "pytorch-optimizer SophiaH (parametrisation, weight decay, update_period)")

    def step(self, closure=None, inputs=None):
        for group in self.param_groups:
            group["hessian_update"] = due(self, group, "update_period")
        return super().step(closure, inputs)
