"""NAdam — Dozat (2016), "Incorporating Nesterov Momentum into Adam"; torch.optim.NAdam
semantics (momentum decay schedule, ``decoupled_weight_decay`` as NAdamW).

Adam with Nesterov momentum whose coefficient ``mu_t`` warms up along a schedule; the
product of every ``mu_t`` so far is a per-tensor state (``mu_product``, a 0-d tensor as
torch keeps it, so checkpoints load both ways).
"""
from ..dsl import Rule, grad, lerp, param, sqrt, state, step
from ._base import CatalogueOptimizer
from ._weight_decay import apply_weight_decay


def nadam(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
          decoupled_weight_decay=False, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    p_decayed, g = apply_weight_decay(p, g, lr, weight_decay, decoupled_weight_decay, False)
    beta1, beta2 = betas
    mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    # one value per tensor, float32 as torch keeps it (mu_product *= mu)
    mu_product = state("mu_product", init=1.0, dtype="float32", scope="tensor") * mu
    m = lerp(state("exp_avg"), g, 1 - beta1)
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    denom = sqrt(v / (1 - beta2**t)) + eps
    update = (lr * (1 - mu) / (1 - mu_product)) * g / denom \
        + (lr * mu_next / (1 - mu_product * mu_next)) * m / denom
    return Rule(p_decayed - update, exp_avg=m, exp_avg_sq=v, mu_product=mu_product)


class NAdam(CatalogueOptimizer):
    """Adam with Nesterov momentum (torch.optim.NAdam semantics, decoupled decay optional)."""

    rule = nadam
    source = ("Dozat (2016), ICLR workshop 'Incorporating Nesterov Momentum into Adam'; "
              "decoupled decay: Loshchilov & Hutter (2019); torch.optim.NAdam")
