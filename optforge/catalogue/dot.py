"""DOT, the Distillation-Oriented Trainer (Zhao, Song & Liang (2023), "DOT: A
Distillation-Oriented Trainer", arXiv:2307.08436; seed 002:102): SGD with separate momenta
for the task-loss gradient g (``p.grad``) and the distillation-loss gradient g_kd
(``given("distill_grad")``), the larger momentum on distillation:

    β_task = momentum - delta,   β_kd = momentum + delta
    b_task <- β_task b_task + (g + wd p)        (buffers start at 0: b_1 = the gradient,
    b_kd   <- β_kd b_kd + g_kd                   as the authors' SGD-style first step)
    p      <- p - lr (b_task + b_kd)

Weight decay goes with the task gradient, as in the authors' code. The distillation
gradient is passed per step: ``opt.step(inputs={"distill_grad": {p: g_kd}})`` (compute it
with ``torch.autograd.grad(kd_loss, params)`` next to ``task_loss.backward()``).
"""
from ..dsl import Rule, given, grad, param, state
from ._base import CatalogueOptimizer


def dot_trainer(lr=0.1, momentum=0.9, delta=0.075, weight_decay=0.0):
    p, g = param(), grad()
    task = (momentum - delta) * state("momentum_buffer") + g + weight_decay * p
    kd = (momentum + delta) * state("kd_momentum_buffer") + given("distill_grad")
    return Rule(p - lr * (task + kd), momentum_buffer=task, kd_momentum_buffer=kd)


class DOT(CatalogueOptimizer):
    """SGD momentum with a larger momentum on the distillation gradient than on the task one."""

    rule = dot_trainer
    source = "Zhao, Song & Liang (2023), arXiv:2307.08436"
