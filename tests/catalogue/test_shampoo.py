"""Shampoo vs a plain-torch implementation of Gupta et al. (2018), Algorithm 1, with the
grafting / interval / start-step extensions exactly as the rule's docstring states, and vs
pytorch-optimizer's Shampoo where the two agree.

Tolerances. The reference keeps its Kronecker factors in float64 and takes float64 eigh
roots; the rule accumulates them in float32 (as every optimizer keeps its states) and roots
them in float64. Float32 rounding of a factor is ~1e-7 of its norm (~30 here), i.e. ~3e-6,
and enters the root as (lambda + eps)^(-1/4): with eps = 1e-2 the relative change of a root
eigenvalue is at most 3e-6 / 1e-2 / 4 < 1e-4, and only in the directions that stale roots
have not seen yet (f = 3). TOL = 1e-4 on ||p_ours - p_ref|| / ||p_ref|| after 10 steps
bounds that; the measured errors are 5e-8 to 8e-6 (the conv weight's 27 x 27 factor
is the largest), while a 10% change of eps moves the result by 1e-3.
"""
import pytest
import torch

import optforge
from optforge.catalogue.shampoo import Shampoo
from tests.conftest import norm_rel, run_side_by_side

SHAPES = [(6, 4), (4, 6), (5, 5), (8, 3, 3, 3)]
STEPS, TOL = 10, 1e-4


def root(a, eps):
    """(a + eps I)^(-1/4) of a symmetric PSD a, in float64."""
    vals, vecs = torch.linalg.eigh(a.double())
    return (vecs * (vals.clamp(min=0) + eps).pow(-0.25)) @ vecs.T


class PlainShampoo(torch.optim.Optimizer):
    """Algorithm 1 on the (shape[0], -1) view, plus the documented extensions, in float64."""

    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0, beta2=0.999, eps=1e-6,
                 precondition_frequency=1, start_preconditioning_step=1, graft_eps=1e-10,
                 grafting=True, graft_sgd=False, moving_average=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      beta2=beta2, eps=eps, f=precondition_frequency,
                                      start=start_preconditioning_step, graft_eps=graft_eps,
                                      grafting=grafting, graft_sgd=graft_sgd, ma=moving_average))

    @torch.no_grad()
    def step(self):
        for grp in self.param_groups:
            for p in grp["params"]:
                st = self.state[p]
                w = p.detach().double().reshape(p.shape[0], -1)
                g = p.grad.double().reshape(p.shape[0], -1) + grp["weight_decay"] * w
                if not st:
                    m, n = g.shape
                    st.update(t=0, L=torch.zeros(m, m, dtype=torch.float64),
                              R=torch.zeros(n, n, dtype=torch.float64), A=torch.zeros_like(g),
                              buf=torch.zeros_like(g))
                st["t"] += 1
                t, b2 = st["t"], grp["beta2"]
                decay, weight = (b2, 1 - b2) if grp["ma"] else (1.0, 1.0)
                st["L"] = decay * st["L"] + weight * g @ g.T
                st["R"] = decay * st["R"] + weight * g.T @ g
                if (t - 1) % grp["f"] == 0:
                    st["PL"], st["PR"] = root(st["L"], grp["eps"]), root(st["R"], grp["eps"])
                direction = st["PL"] @ g @ st["PR"]
                graft = g
                if grp["grafting"]:
                    if not grp["graft_sgd"]:
                        st["A"] += g * g
                        graft = g / (st["A"].sqrt() + grp["graft_eps"])
                    direction = direction * graft.norm() / direction.norm()
                if t < grp["start"]:
                    direction = graft
                st["buf"] = grp["momentum"] * st["buf"] + direction
                p.copy_((w - grp["lr"] * st["buf"]).reshape(p.shape))


CONFIGS = [
    dict(lr=0.1, eps=1e-2, precondition_frequency=3),
    dict(lr=0.05, eps=1e-2, precondition_frequency=3, momentum=0.9, weight_decay=0.01,
         graft_sgd=True, start_preconditioning_step=3),
    dict(lr=0.02, eps=1e-2, precondition_frequency=2, moving_average=True, beta2=0.9,
         grafting=False),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=["adagrad_graft", "sgd_graft_momentum_wd_start",
                                             "ema_no_graft"])
def test_matches_plain_shampoo(shape, kw, backend):
    ours, ref, _, _ = run_side_by_side(lambda ps: Shampoo(ps, backend=backend, **kw),
                                       lambda ps: PlainShampoo(ps, **kw), shape, steps=STEPS)
    assert norm_rel(ours, ref) < TOL


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)], ids=str)
def test_matches_pytorch_optimizer_shampoo(shape):
    """pytorch-optimizer's Shampoo agrees with Algorithm 1 for 2-D weights with momentum 0
    (its momentum keeps the *preconditioned* gradient and mixes it into the next raw one),
    roots every step (with a longer interval its roots start at zero, not at the first
    root) and no grafting: L_0 = matrix_eps I, sums, float32 SVD roots. Coupled weight
    decay agrees too. Its float32 SVD of the factors is the tolerance: as above, rounding of
    ~3e-6 against eps = 1e-2."""
    from pytorch_optimizer import Shampoo as PTShampoo
    kw = dict(lr=0.05, weight_decay=0.01)
    ours, ref, _, _ = run_side_by_side(
        lambda ps: Shampoo(ps, eps=1e-2, grafting=False, **kw),
        lambda ps: PTShampoo(ps, matrix_eps=1e-2, **kw), shape, steps=STEPS)
    assert norm_rel(ours, ref) < TOL


def test_grafting_takes_the_adagrad_step_length():
    """Layer-wise grafting: on step 1 the update has exactly the Frobenius norm of Adagrad's."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 4))
    g = torch.randn(6, 4)
    w0 = w.detach().clone()
    w.grad = g.clone()
    Shampoo([w], lr=1.0).step()
    adagrad = g / (g.abs() + 1e-10)  # sum of squares after one step is g^2
    step = w0 - w.detach()
    assert abs(step.norm() / adagrad.norm() - 1) < 1e-6
    # and its direction is Shampoo's, not Adagrad's
    assert norm_rel(step / step.norm(), adagrad / adagrad.norm()) > 0.1




def test_shampoo_plus_adamw_trains_an_mlp():
    """Cross-entropy on 3 rings from ~1.1 (log 3) to below 0.05 in 150 steps (measured
    0.0045); biases routed to AdamW in the same optimizer."""
    assert train_rings(lambda groups: Shampoo(groups, lr=0.05, momentum=0.9,
                                              precondition_frequency=5), steps=150) < 0.05


def rings(n):
    """n points in 3 concentric noisy rings (radius 1, 2, 3), labelled by ring."""
    y = torch.arange(n) % 3
    angle = torch.rand(n) * 6.2832
    radius = (y + 1).float() + 0.15 * torch.randn(n)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], 1), y


def train_rings(make_optimizer, steps):
    """The convergence smoke test the matrix rules share: a 2 -> 32 -> 32 -> 3 tanh MLP on
    384 points of ``rings``, full batch. Weights get the matrix rule; biases a param group
    routed to AdamW (lr 1e-2, no decay). Returns the last cross-entropy."""
    torch.manual_seed(0)
    x, y = rings(384)
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                                torch.nn.Tanh(), torch.nn.Linear(32, 3))
    opt = make_optimizer([
        {"params": [p for p in model.parameters() if p.dim() == 2]},
        {"params": [p for p in model.parameters() if p.dim() < 2], "rule": optforge.AdamW,
         "lr": 1e-2, "weight_decay": 0.0}])
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()
