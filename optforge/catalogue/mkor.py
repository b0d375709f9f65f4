"""MKOR and MKOR-H — Mozaffari, Li, Zhang & Mehri Dehnavi (NeurIPS 2023), "MKOR:
Momentum-Enabled Kronecker-Factor-Based Optimizer Using Rank-1 Updates" (seed 002:68).

For the weight ``W`` (rows x cols = out x in*kh*kw) of an ``nn.Linear`` / ``nn.Conv2d``
layer with inputs ``a`` (n x cols, ``layer_input()``) and output gradients ``ds``
(n x rows, ``layer_output_grad()``), MKOR keeps the *inverses* of the two Kronecker
factors, ``L^-1`` (rows x rows) and ``R^-1`` (cols x cols), both starting at ``I``, and
on steps 1, 1+f, 1+2f... (``f = inv_freq``) updates them with rank-1 Sherman-Morrison
steps. The equations implemented (Algorithm 1, lines 2-10):

    a_t = mean over the batch of a                         (cols, 1)   line 2
    g_t = n * mean over the batch of ds                    (rows, 1)   line 3
    L^ = zeta L^-1 + (1 - zeta) I  if ||L^-1||_inf > eps  else L^-1    line 5
    R^ = zeta R^-1 + (1 - zeta) I  if ||R^-1||_inf > eps  else R^-1    line 6
    L^-1 <- (gamma L^ ^-1 + (1 - gamma) g_t g_t^T)^-1                  line 7
          = L^/gamma - (1-gamma)/gamma^2 L^ g g^T L^ / (1 + (1-gamma)/gamma g^T L^ g)
    R^-1 <- (gamma R^ ^-1 + (1 - gamma) a_t a_t^T)^-1                  line 8
    D  = L^-1 grad R^-1                                                line 9
    dW = D ||grad||_F / ||D||_F                                        line 10

then the backend optimizer (line 14): torch.optim.SGD with momentum, dampening 0, as
the authors' code uses by default: ``u = dW + weight_decay W``, ``buf = momentum buf +
u`` (the first buffer is the first ``u``), ``W -= lr buf``.

Notes on the reading of the paper:

* ``ds`` is the gradient of a *mean*-reduced loss and carries a 1/n factor, so the
  per-example mean output gradient is ``n`` times its batch mean (line 3's average).
* Lines 7-8 are the exact Sherman-Morrison inverse of the EMA ``L_t = gamma L_{t-1} +
  (1 - gamma) g g^T`` (Eq. 3.3 with the rank-1 approximation), computed with
  ``sherman_morrison(L^ / gamma, (1 - gamma) g, g)``. The printed Eq. 5 / 3.5 reads
  ``gamma L^-1 + (1-gamma)/(gamma^2 (1 + gamma(1-gamma) g^T L^-1 g)) L^-1 g g^T L^-1``
  (a plus sign, gamma for 1/gamma); that is not the inverse of the EMA it is derived
  from, so the derivation is followed, not the typeset formula.
* ``||.||_inf`` is the induced infinity norm (largest absolute row sum): the paper says
  "the infinity norm of the factors"; the authors' code compares the largest absolute
  entry with 2. The stabiliser acts on factor-update steps only, before the rank-1 step.
* Line 10 divides by ||D||_F floored at 1e-30: a zero gradient gives a zero step (the
  authors' code skips the layer when the ratio is NaN).
* The authors' code also blends ``0.95 L^-1 + 0.05 I`` before every rank-1 update and
  clips activations at +-100; neither is in the paper and neither is done here.

MKOR-H (Section 3.2, "hybrid MKOR") falls back to the first-order optimizer mid-training
when second-order updates stop paying off, "using a loss-decrease-rate-based switching
mechanism" whose exact test the paper does not give. Ours: the loss of every step is
recorded (``step(closure)``'s value or ``step(loss=...)``); over consecutive windows of
``switch_window`` steps, window means ``m_1, m_2, ...``; when a window k >= 2 completes
with a relative decrease ``(m_{k-1} - m_k) / |m_{k-1}| < switch_threshold``, every
MKOR-H group switches for good to the first-order step (``dW = grad``, same momentum
buffer, same lr) from the next step on. The switch sets the group's bool
``second_order`` to False, which selects a rule variant without matrix stage: no factor
update, no layer statistics read, no preconditioning cost (the paper's point). The
factor inverses stay in the state, frozen.

Only weights: give biases an elementwise rule (``optforge.split_matrix_params(model,
other=...)``) and call ``optimizer.attach(model)`` before training. pytorch-optimizer has
no MKOR.
"""
from __future__ import annotations

from ..dsl import (Rule, batch_mean, batch_size, every, fnorm, grad, layer_input,
                   layer_output_grad, matmul, matrix_state, maximum, sherman_morrison,
                   specialize_on_zero, where, add_diagonal)
from ._base import CatalogueOptimizer
from ._column_extrema import infinity_norm
from .kfac import sgd_on  # line 14: torch.optim.SGD (dampening 0) on the direction

NORM_FLOOR = 1e-30  # ||D||_F below this is taken as this: a zero gradient gives no NaN


def stabilized(inv, zeta, threshold):
    """Lines 5-6: lean the inverse factor towards I when its infinity norm is large."""
    return where(infinity_norm(inv) > threshold, add_diagonal(zeta * inv, 1 - zeta), inv)


def rank1_inverse(inv, u, gamma):
    """Lines 7-8: (gamma inv^-1 + (1 - gamma) u u^T)^-1 by Sherman-Morrison."""
    return sherman_morrison(inv / gamma, (1 - gamma) * u, u)


def mkor_direction(stat_decay, inv_freq, stabilization, stabilization_threshold):
    """The rescaled preconditioned gradient dW and the new inverse factors."""
    G = grad()
    ds = layer_output_grad()
    a_mean = batch_mean(layer_input())
    g_mean = batch_size(ds) * batch_mean(ds)  # per-example mean (ds has the 1/n)
    L_inv = matrix_state("L_inv", ("rows", "rows"), init="identity")
    R_inv = matrix_state("R_inv", ("cols", "cols"), init="identity")
    L_new = every(inv_freq, rank1_inverse(
        stabilized(L_inv, stabilization, stabilization_threshold), g_mean, stat_decay), L_inv)
    R_new = every(inv_freq, rank1_inverse(
        stabilized(R_inv, stabilization, stabilization_threshold), a_mean, stat_decay), R_inv)
    D = matmul(matmul(L_new, G), R_new)
    return D * (fnorm(G) / maximum(fnorm(D), NORM_FLOOR)), {"L_inv": L_new, "R_inv": R_new}


@specialize_on_zero("momentum")
def mkor(lr=0.1, momentum=0.9, weight_decay=0.0, stat_decay=0.95, inv_freq=10,
         stabilization=0.9, stabilization_threshold=2.0):
    direction, factors = mkor_direction(stat_decay, inv_freq, stabilization,
                                        stabilization_threshold)
    new_p, extra = sgd_on(direction, lr, momentum, weight_decay)
    return Rule(new_p, **factors, **extra)


@specialize_on_zero("momentum")
def mkor_h(lr=0.1, momentum=0.9, weight_decay=0.0, stat_decay=0.95, inv_freq=10,
           stabilization=0.9, stabilization_threshold=2.0, second_order=True):
    if not second_order:  # switched: SGD on the raw gradient, factors left as they are
        new_p, extra = sgd_on(grad(), lr, momentum, weight_decay)
        return Rule(new_p, **extra)
    return mkor(lr, momentum, weight_decay, stat_decay, inv_freq, stabilization,
                stabilization_threshold)


class MKOR(CatalogueOptimizer):
    """Rank-1 Sherman-Morrison updates of K-FAC's inverse factors, rescaled, with momentum."""

    rule = mkor
    source = "Mozaffari et al. (2023), arXiv:2306.01685 (NeurIPS 2023)"


class MKORH(CatalogueOptimizer):
    """MKOR that switches to its first-order step once the loss stops falling fast.

    ``MKORH(params, ..., switch_window=10, switch_threshold=0.01)``; every ``step`` needs
    the step's loss: ``step(closure)`` or ``step(loss=loss)``. ``switched_at`` is the step
    after which the update became first-order (None while MKOR runs).
    """

    rule = mkor_h
    source = ("Mozaffari et al. (2023), arXiv:2306.01685, Section 3.2 (MKOR-H; the switching "
              "test is ours: windowed relative loss decrease)")

    def __init__(self, params, *args, switch_window: int = 10, switch_threshold: float = 0.01,
                 **kwargs):
        if isinstance(switch_window, bool) or not isinstance(switch_window, int) \
                or switch_window < 1:
            raise ValueError(f"MKORH: switch_window must be an int >= 1, got {switch_window!r}")
        if not isinstance(switch_threshold, (int, float)) or isinstance(switch_threshold, bool) \
                or switch_threshold != switch_threshold or abs(switch_threshold) == float("inf"):
            raise ValueError(f"MKORH: switch_threshold must be a finite number, got "
                             f"{switch_threshold!r}")
        self.switch = {"window": switch_window, "threshold": float(switch_threshold),
                       "losses": [], "previous_mean": None, "steps": 0, "switched_at": None}
        super().__init__(params, *args, **kwargs)

    @property
    def switched_at(self):
        return self.switch["switched_at"]

    def step(self, closure=None, inputs=None, loss=None):
        if closure is None and loss is None:
            raise ValueError("MKORH: the switching test needs each step's loss: call "
                             "step(closure) or step(loss=loss)")
        if closure is not None and loss is not None:
            raise ValueError("MKORH: give the loss either through the closure or as loss=, "
                             "not both")
        result = super().step(closure, inputs)
        self._observe(float(result if closure is not None else loss))
        return result

    def _observe(self, value: float) -> None:
        """Record one loss; after a full window, compare its mean with the previous one."""
        s = self.switch
        s["steps"] += 1
        if s["switched_at"] is not None:
            return
        s["losses"].append(value)
        if len(s["losses"]) < s["window"]:
            return
        mean, previous = sum(s["losses"]) / len(s["losses"]), s["previous_mean"]
        s["losses"], s["previous_mean"] = [], mean
        if previous is not None and (previous - mean) / max(abs(previous), 1e-30) \
                < s["threshold"]:
            s["switched_at"] = s["steps"]
            for group in self.param_groups:
                if self.spec_of(group) is self.spec:
                    group["second_order"] = False

    def state_dict(self):
        sd = super().state_dict()
        sd["mkor_h"] = {**self.switch, "losses": list(self.switch["losses"])}
        return sd

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        switch = state_dict.pop("mkor_h", None)
        super().load_state_dict(state_dict)
        if switch is not None:
            self.switch = {**switch, "losses": list(switch["losses"])}
