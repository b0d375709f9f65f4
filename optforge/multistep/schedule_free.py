"""Schedule-Free AdamW and SGD (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 2024,
"The Road Less Scheduled", arXiv:2405.15682, Alg. 1), with the train/eval weight swap of
the authors' code (facebookresearch/schedule_free).

The method keeps two sequences, z (the base iterates) and x (their weighted average), and
evaluates gradients at the interpolation y = (1 - beta1) z + beta1 x:

    g = grad f(y)
    gamma_t = lr min(1, t / warmup_steps)          (AdamW: times sqrt(1 - beta2^t))
    u = g / (sqrt(v_t) + eps) + wd y               (AdamW; SGD: u = g + wd y),
                                                   v_t = beta2 v + (1 - beta2) g^2
    z <- z - gamma_t u
    c = w_t / sum_{i<=t} w_i,   w_t = t^r max_{i<=t}(gamma_i)^weight_lr_power
    x <- (1 - c) x + c z

As in the authors' code the parameter holds y while training and x is never stored: the
update of y follows from the two above,

    y <- lerp(y, z, c) + gamma_t (beta1 (1 - c) - 1) u         (z before its update)

and ``optimizer.eval()`` turns p into x = lerp(y, z, 1 - 1/beta1), ``optimizer.train()``
back into y = lerp(x, z, 1 - beta1). The elementwise update is a DSL rule, compiled for the
chosen backend; the per-group scalars (gamma_t, c, the weight sum) are computed here on the
host, as in the reference, and stored in the param groups under its names (``k``,
``lr_max``, ``weight_sum``, ``train_mode``), with state ``z`` and ``exp_avg_sq``, so the
reference's checkpoints load (pytorch-optimizer's ``step`` counter is read as ``k``).

pytorch-optimizer's ScheduleFreeAdamW (4.1) differs from the paper: it divides v by the
bias correction inside the root instead of folding sqrt(1 - beta2^t) into gamma_t, so its
averaging weights ignore that factor; it is not used as the reference for AdamW. Its
ScheduleFreeSGD matches the paper and the authors' SGD.
"""
from __future__ import annotations

import math

import torch

from ..dsl import Rule, grad, lerp, param, sqrt, state
from ..runtime.backends import check_backend_name
from ..runtime.optimizer import Optimizer


def schedule_free_adamw(lr=0.0025, ckp1=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """The elementwise step; ``lr`` is gamma_t and ``ckp1`` is c (both from the host)."""
    y, g = param(), grad()
    beta1, beta2 = betas
    z = state("z", init=param())
    v = beta2 * state("exp_avg_sq") + (1 - beta2) * g * g
    u = g / (sqrt(v) + eps) + weight_decay * y
    return Rule(lerp(y, z, ckp1) + lr * (beta1 * (1 - ckp1) - 1) * u, z=z - lr * u,
                exp_avg_sq=v)


def schedule_free_sgd(lr=1.0, ckp1=1.0, momentum=0.9, weight_decay=0.0):
    y, g = param(), grad()
    z = state("z", init=param())
    u = g + weight_decay * y
    return Rule(lerp(y, z, ckp1) + lr * (momentum * (1 - ckp1) - 1) * u, z=z - lr * u)


class _ScheduleFree(torch.optim.Optimizer):
    """Param groups with the reference's keys; a compiled rule does the elementwise step.

    The compiled optimizer shares this optimizer's ``state`` dict (one object), so its
    states are ours; its own param groups only carry the step's scalars.
    """

    rule = None          # set by subclasses
    hyper_keys = ()      # the group entries the rule reads besides lr and ckp1

    def __init__(self, params, defaults: dict, backend: str):
        check_backend_name(backend)
        self.backend = backend
        self._inner = None
        super().__init__(params, dict(defaults, k=0, train_mode=True, weight_sum=0.0,
                                      lr_max=-1.0))

    def _beta1(self, group) -> float:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        # torch's keeps only defaults/state/param_groups; the compiled optimizer is rebuilt
        # (and an lr scheduler's instance-level wrapper of ``step`` is not picklable)
        return {k: v for k, v in self.__dict__.items() if k not in ("_inner", "step")} \
            | {"_inner": None}

    def _gamma(self, group, k: int) -> float:
        """gamma at step k + 1 (subclasses add their factors to the warmup schedule)."""
        warmup = group["warmup_steps"]
        return group["lr"] * ((k + 1) / warmup if k < warmup else 1.0)

    def add_param_group(self, param_group: dict) -> None:
        # checked with the defaults filled in, before the group exists (torch's __init__
        # sets self.defaults first, then adds the constructor's groups through here)
        where = "the constructor" if not getattr(self, "param_groups", None) else \
            f"param group {len(self.param_groups)}"
        self._validate({**self.defaults, **param_group}, where)
        super().add_param_group(param_group)
        self._inner = None   # rebuilt over the new groups at the next step

    def _validate(self, group: dict, where: str) -> None:
        name = type(self).__name__
        for key in ("lr", "weight_decay", "warmup_steps", "r", "weight_lr_power") + \
                (("eps",) if "eps" in group else ()):
            value = group[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: {key} = {value!r} in {where} must be a finite "
                                 "number >= 0")
        if "betas" in group:
            betas = group["betas"]
            if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                    and 0 < betas[0] < 1 and 0 <= betas[1] < 1):
                raise ValueError(f"{name}: betas = {betas!r} in {where} must be two numbers, "
                                 "0 < beta1 < 1 (eval() divides by it) and 0 <= beta2 < 1")
        elif not 0 < group["momentum"] < 1:
            raise ValueError(f"{name}: momentum = {group['momentum']!r} in {where} must lie "
                             "in (0, 1) (eval() divides by it)")

    def _inner_optimizer(self):
        if self._inner is None:
            self._inner = Optimizer([dict(params=g["params"]) for g in self.param_groups],
                                    type(self).rule, backend=self.backend)
        self._inner.state = self.state   # (re-bound: load_state_dict replaces self.state)
        return self._inner

    @torch.no_grad()
    def step(self, closure=None):
        not_training = [i for i, g in enumerate(self.param_groups) if not g["train_mode"]]
        if not_training:   # checked before anything moves
            raise RuntimeError(f"{type(self).__name__}.step: param group(s) {not_training} are "
                               "in eval mode (parameters hold the average x); call "
                               "optimizer.train() before training steps")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        inner = self._inner_optimizer()
        updates = []
        for group, own in zip(self.param_groups, inner.param_groups):
            k = group["k"]
            gamma = self._gamma(group, k)
            lr_max = max(gamma, group["lr_max"])
            weight = (k + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
            weight_sum = group["weight_sum"] + weight
            own.update(lr=gamma, ckp1=weight / weight_sum if weight_sum != 0 else 0.0,
                       **{key: group[key] for key in self.hyper_keys})
            updates.append(dict(k=k + 1, lr_max=lr_max, weight_sum=weight_sum))
        inner.step()
        for group, update in zip(self.param_groups, updates):   # only after it succeeded
            group.update(update)
        return loss

    @torch.no_grad()
    def _swap(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta1 = self._beta1(group)
            weight = 1 - beta1 if to_train else 1 - 1 / beta1
            for p in group["params"]:
                z = self.state[p].get("z") if p in self.state else None
                if z is not None:
                    p.lerp_(z, weight)
            group["train_mode"] = to_train

    def eval(self) -> None:
        """Parameters hold x (the average) for evaluation and checkpoints."""
        self._swap(False)

    def train(self) -> None:
        """Parameters hold y (where gradients are taken) for training."""
        self._swap(True)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            if "k" not in group:             # a pytorch-optimizer checkpoint counts in 'step'
                group["k"] = int(group.get("step", 0))
            for p in group["params"]:
                st = self.state.get(p)
                if st and "z" in st and "step" not in st:   # the compiled rule's counter
                    st["step"] = torch.tensor(float(group["k"]), dtype=torch.float32)
        if self._inner is not None:
            self._inner.state = self.state


class ScheduleFreeAdamW(_ScheduleFree):
    """``ScheduleFreeAdamW(params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    warmup_steps=0, r=0.0, weight_lr_power=2.0, *, backend="auto")`` (the authors'
    defaults). Call ``optimizer.train()`` before training and ``optimizer.eval()`` before
    evaluating or saving."""

    rule = schedule_free_adamw
    hyper_keys = ("betas", "eps", "weight_decay")

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, *, backend: str = "auto"):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, warmup_steps=warmup_steps,
                                      r=r, weight_lr_power=weight_lr_power), backend)

    def _beta1(self, group) -> float:
        return group["betas"][0]

    def _gamma(self, group, k: int) -> float:
        return super()._gamma(group, k) * math.sqrt(1 - group["betas"][1] ** (k + 1))


class ScheduleFreeSGD(_ScheduleFree):
    """``ScheduleFreeSGD(params, lr=1.0, momentum=0.9, weight_decay=0, warmup_steps=0, r=0.0,
    weight_lr_power=2.0, *, backend="auto")`` (the authors' defaults); ``momentum`` is the
    interpolation beta. Call ``train()`` / ``eval()`` as for ScheduleFreeAdamW."""

    rule = schedule_free_sgd
    hyper_keys = ("momentum", "weight_decay")

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0, *, backend: str = "auto"):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r,
                                      weight_lr_power=weight_lr_power), backend)

    def _beta1(self, group) -> float:
        return group["momentum"]

