"""Lion-K (Chen, Liu, Liang & Liu 2023, arXiv:2310.05898) matches a plain-torch reference.

The reference is written here from the paper's update, independent of the DSL, with dK
passed as a torch function:
    c = b1 m + (1 - b1) g;   p <- p - lr (dK(c) + wd p);   m <- b2 m + (1 - b2) g
"""
import pytest
import torch

import optforge
from tests.conftest import SHAPES, norm_rel, run_side_by_side

KAPPAS = {  # class -> dK(c, group), from the paper's choices of K
    optforge.LionKappaSign: lambda c, grp: torch.sign(c),
    optforge.LionKappaIdentity: lambda c, grp: c,
    optforge.LionKappaClamp: lambda c, grp: torch.clamp(c / grp["delta"], -1.0, 1.0),
}


class ReferenceLionK(torch.optim.Optimizer):
    def __init__(self, params, dk, lr, betas=(0.9, 0.99), weight_decay=0.0, delta=None):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, delta=delta))
        self.dk = dk

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                c = b1 * m + (1 - b1) * p.grad
                p.sub_(group["lr"] * (self.dk(c, group) + group["weight_decay"] * p))
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


# delta = 0.2 puts the momentum of these O(1) test gradients in both regimes of the clamp
CASES = [(optforge.LionKappaSign, dict(lr=1e-3)),
         (optforge.LionKappaSign, dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)),
         (optforge.LionKappaIdentity, dict(lr=1e-2)),
         (optforge.LionKappaIdentity, dict(lr=3e-2, betas=(0.8, 0.95), weight_decay=0.5)),
         (optforge.LionKappaClamp, dict(lr=1e-2, delta=0.2)),
         (optforge.LionKappaClamp, dict(lr=3e-2, betas=(0.8, 0.95), delta=0.2, weight_decay=0.5))]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls,kw", CASES, ids=lambda x: getattr(x, "__name__", "") or "-".join(x))
def test_lion_kappa_matches_paper(cls, kw, shape, backend):
    ours, ref, _, opt_ref = run_side_by_side(
        lambda ps: cls(ps, backend=backend, **kw),
        lambda ps: ReferenceLionK(ps, KAPPAS[cls], **kw), shape)
    assert norm_rel(ours, ref) < 1e-6


@pytest.mark.parametrize("kw", [kw for cls, kw in CASES if cls is optforge.LionKappaClamp],
                         ids=["default", "decay"])
def test_clamp_cases_exercise_both_regimes(kw):
    # the clamp parity test only tests the clamp if some |c| are below delta and some above
    inside = []

    def dk(c, group):
        inside.append((c.abs() < group["delta"]).double().mean().item())
        return torch.clamp(c / group["delta"], -1.0, 1.0)

    # the reference goes second: run_side_by_side draws the gradients at its parameter
    run_side_by_side(lambda ps: torch.optim.SGD(ps, lr=0.0),
                     lambda ps: ReferenceLionK(ps, dk, **kw), (257, 129))
    assert 0.2 < sum(inside) / len(inside) < 0.8


def test_sign_kappa_is_lion_bit_for_bit():
    kw = dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)
    ours, ref, _, _ = run_side_by_side(lambda ps: optforge.LionKappaSign(ps, **kw),
                                       lambda ps: optforge.Lion(ps, **kw), (257, 129))
    assert torch.equal(ours, ref)


def _minimise_quadratic(cls, a, steps, **kw):
    p = torch.nn.Parameter(torch.zeros_like(a))
    opt = cls([p], **kw)
    for _ in range(steps):
        p.grad = p.detach() - a          # f(p) = |p - a|^2 / 2
        opt.step()
    return p.detach()


@pytest.mark.parametrize("cls,solution", [
    # K = |x|^2/2: K* is an L2 penalty, the fixed point solves (p - a) + wd p = 0
    (optforge.LionKappaIdentity, lambda a, wd, delta: a / (1 + wd)),
    # Huber K: wd p = -clamp((p - a)/delta, -1, 1): the box |p| <= 1/wd where |a| is large,
    # the shrunk a / (1 + wd delta) inside
    (optforge.LionKappaClamp, lambda a, wd, delta: torch.where(
        a.abs() >= 1 / wd + delta, torch.sign(a) / wd, a / (1 + wd * delta))),
], ids=["identity", "clamp"])
def test_lion_kappa_solves_the_composite_problem(cls, solution):
    # Lion-K with weight decay minimises f + (scaled) K*: its fixed point is predicted by the paper
    a = torch.tensor([-6.0, -0.5, 0.0, 0.3, 1.5, 2.05, 8.0])
    wd, delta = 0.5, 0.1
    kw = dict(lr=0.1, weight_decay=wd) | (dict(delta=delta) if cls is optforge.LionKappaClamp else {})
    p = _minimise_quadratic(cls, a, 600, **kw)
    assert torch.allclose(p, solution(a, wd, delta), atol=1e-4)


def test_clamp_kappa_keeps_lions_box():
    # |dK| <= 1, so from inside |p| <= 1/wd no gradient, however large, leaves the box
    p = _minimise_quadratic(optforge.LionKappaClamp, torch.full((5,), 1e6), 500,
                            lr=0.1, weight_decay=2.0, delta=1e-3)
    assert (p <= 0.5 + 1e-6).all() and (p > 0.49).all()
