"""MKOR / MKOR-H vs a plain-torch float64 implementation of Mozaffari et al. (2023),
Algorithm 1, on real forward/backward passes.

The reference, from the paper's equations (see optforge/catalogue/mkor.py for the
reading): on steps 1, 1+f, ... each inverse factor is stabilised (``zeta M + (1-zeta) I``
when its largest absolute row sum exceeds eps) and then replaced by the inverse of the
EMA ``gamma M^-1 + (1-gamma) u u^T`` -- computed here by inverting that matrix directly
(torch.linalg.inv in float64), not by Sherman-Morrison, so the rank-1 algebra is checked
too; ``u`` is the batch mean of the layer input (right factor) or of the per-example
output gradient (left factor). ``D = L^-1 grad R^-1`` is rescaled to ``||grad||``, then
SGD with momentum (torch conventions) takes the step.

The reference is fed the optimizer's own gradients and layer statistics at every step
(recorded by hooks written here, independently of ``attach``) and keeps its own float64
weights, so after 10 steps the comparison measures the optimizer's arithmetic.
Tolerance: float32 against float64 with well-conditioned inverse factors (condition
number < 10 here): each step's relative error is a few float32 ulps, and we measured
6e-8 to 1.1e-7 after 10 steps on every backend; TOL = 1e-6 leaves a factor 10.
"""
import pytest
import torch
from torch import nn

import optforge
from optforge.catalogue.mkor import MKOR, MKORH
from optforge.runtime.inputs import InputError
from tests.catalogue.layer_stats_reference import Recorder  # hooks independent of attach

TOL = 1e-6
STEPS = 10


class RefMKOR:
    """Algorithm 1 per weight, float64; ``second_order=False`` is MKOR-H's first-order step."""

    def __init__(self, lr=0.1, momentum=0.9, weight_decay=0.0, stat_decay=0.95, inv_freq=10,
                 stabilization=0.9, stabilization_threshold=2.0):
        self.lr, self.mu, self.wd = lr, momentum, weight_decay
        self.gamma, self.f = stat_decay, inv_freq
        self.zeta, self.eps = stabilization, stabilization_threshold
        self.L, self.R, self.buf = {}, {}, {}
        self.stabilised = 0  # how often lines 5-6 fired: the cases below need both branches

    def _stabilise(self, m):
        if m.abs().sum(1).max() > self.eps:
            self.stabilised += 1
            return self.zeta * m + (1 - self.zeta) * torch.eye(len(m), dtype=m.dtype)
        return m

    def _ema_inverse(self, m_inv, u):
        ema = self.gamma * torch.linalg.inv(m_inv) + (1 - self.gamma) * torch.outer(u, u)
        return torch.linalg.inv(ema)

    def __call__(self, t, w, W, G, a, ds, second_order=True):
        rows, cols = G.shape
        L = self.L.setdefault(w, torch.eye(rows, dtype=torch.float64))
        R = self.R.setdefault(w, torch.eye(cols, dtype=torch.float64))
        if second_order:
            if (t - 1) % self.f == 0:
                L = self.L[w] = self._ema_inverse(self._stabilise(L), ds.mean(0) * len(ds))
                R = self.R[w] = self._ema_inverse(self._stabilise(R), a.mean(0))
            D = L @ G @ R
            G = D * G.norm() / D.norm()
        u = G.reshape(W.shape) + self.wd * W
        if self.mu:
            u = u if w not in self.buf else self.mu * self.buf[w] + u
            self.buf[w] = u
        return W - self.lr * u


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4))


def batches(steps, shape=(16, 5), classes=3, seed=1):
    """Inputs with labels a fixed random linear map of them picks (learnable)."""
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(torch.Size(shape[1:]).numel(), classes, generator=gen)
    xs = [torch.randn(shape, generator=gen) for _ in range(steps)]
    return [(x, (x.flatten(1) @ teacher).argmax(1)) for x in xs]


def make(cls, model, backend="torch", **hyper):
    """``cls`` on the weights, SGD on the biases; attached to ``model``."""
    opt = cls(optforge.split_matrix_params(model, other="SGD", lr=0.05), backend=backend,
              **hyper)
    opt.attach(model)
    return opt


def drive(model, opt, ref, data, pass_loss=False):
    """Train with ``opt`` and feed ``ref`` the same statistics; returns [(ours, ref's)]."""
    rec = Recorder(model)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    ref_w = {w: w.detach().double().clone() for w in weights}
    for t, (x, y) in enumerate(data, 1):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        second = getattr(ref, "second_order", lambda: True)()
        for w in weights:
            g = w.grad.double().reshape(w.shape[0], -1)
            ref_w[w] = ref(t, w, ref_w[w], g, rec.a[w], rec.ds[w], second)
        if pass_loss:
            ref.observe(loss.item())
            opt.step(loss=loss.item())
        else:
            opt.step()
    return [(w.detach().double(), ref_w[w]) for w in weights]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


CASES = {
    # inv_freq 3: factor updates on steps 1, 4, 7, 10
    "default": (dict(lr=0.1, inv_freq=3), False),
    # a low threshold makes lines 5-6 fire; so does gamma = 0.8 (L^-1 grows like 1/gamma)
    "stabilised": (dict(lr=0.05, inv_freq=3, stabilization=0.8,
                        stabilization_threshold=1.02), True),
    "no_momentum_decay": (dict(lr=0.05, momentum=0.0, weight_decay=0.01, stat_decay=0.8,
                               inv_freq=1), True),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case, backend):
    hyper, stabilises = CASES[case]
    model = mlp()
    ref = RefMKOR(**hyper)
    for ours, theirs in drive(model, make(MKOR, model, backend, **hyper), ref,
                              batches(STEPS)):
        assert rel(ours, theirs) < TOL
    assert (ref.stabilised > 0) == stabilises


def test_conv_weights_use_patches():
    model = conv_net()
    hyper = dict(lr=0.05, inv_freq=2)
    pairs = drive(model, make(MKOR, model, **hyper), RefMKOR(**hyper),
                  batches(6, shape=(8, 2, 5, 5), classes=4))
    for ours, theirs in pairs:
        assert rel(ours, theirs) < TOL


class RefSwitch(RefMKOR):
    """RefMKOR plus MKOR-H's test, written from its docstring: window means, switch when
    the relative decrease of a window mean over the previous one is below threshold."""

    def __init__(self, window, threshold, **hyper):
        super().__init__(**hyper)
        self.window, self.threshold = window, threshold
        self.losses, self.means, self.switched_at = [], [], None

    def second_order(self):
        return self.switched_at is None

    def observe(self, loss):
        self.losses.append(loss)
        if self.switched_at is None and len(self.losses) % self.window == 0:
            self.means.append(sum(self.losses[-self.window:]) / self.window)
            if len(self.means) > 1 and \
                    (self.means[-2] - self.means[-1]) / abs(self.means[-2]) < self.threshold:
                self.switched_at = len(self.losses)


def test_mkor_h_switches_to_first_order(backend):
    hyper = dict(lr=0.1, inv_freq=2)
    # the mean loss of steps 3-4 is 1.2% below that of steps 1-2 (< 10%): the switch
    # comes after step 4, and steps 5-10 are first-order
    switch = dict(switch_window=2, switch_threshold=0.1)
    model = mlp()
    opt = make(MKORH, model, backend, **hyper, **switch)
    ref = RefSwitch(2, 0.1, **hyper)
    for ours, theirs in drive(model, opt, ref, batches(STEPS), pass_loss=True):
        assert rel(ours, theirs) < TOL
    assert ref.switched_at == opt.switched_at == 4
    assert opt.param_groups[0]["second_order"] is False
    assert "second_order" not in opt.param_groups[1]  # the SGD bias group keeps its rule
    # the first-order variant has no matrix stage: it runs without the layer statistics
    opt.layer_stats.remove()
    opt.layer_stats = None
    x, y = batches(1, seed=5)[0]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step(loss=loss.item())


@pytest.mark.parametrize("cls", [MKOR, MKORH])
def test_state_dict_round_trip(cls):
    data = batches(STEPS)
    # MKOR-H: window means of steps 1-3 and 4-6 differ by 16% (< 25%): the switch comes
    # after step 6, so the window that decides it spans the checkpoint taken after step 5
    extra = dict(switch_window=3, switch_threshold=0.25) if cls is MKORH else {}

    def train(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step(loss=loss.item()) if cls is MKORH else opt.step()

    straight = mlp()
    opt = make(cls, straight, inv_freq=3, **extra)
    train(straight, opt, data)

    resumed = mlp()
    first = make(cls, resumed, inv_freq=3, **extra)
    train(resumed, first, data[:5])
    saved = first.state_dict()
    second = make(cls, resumed, inv_freq=3, **extra)
    second.load_state_dict(saved)
    weight = resumed[0].weight
    assert set(second.state[weight]) >= {"L_inv", "R_inv", "momentum_buffer", "step"}
    assert second.state[weight]["L_inv"].shape == (7, 7)
    train(resumed, second, data[5:])
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)
    if cls is MKORH:
        assert second.switched_at == opt.switched_at == 6


def test_errors_name_the_problem():
    model = mlp()
    opt = MKOR(optforge.split_matrix_params(model, other="SGD"))
    nn.functional.cross_entropy(model(torch.randn(4, 5)), torch.tensor([0, 1, 2, 0])).backward()
    with pytest.raises(InputError, match=r"call optimizer\.attach\(model\)"):
        opt.step()
    bias_in_mkor = MKOR([model[0].bias])
    bias_in_mkor.attach(model)
    with pytest.raises(InputError, match=r"\(7,\) is not one \(route it to another rule\)"):
        bias_in_mkor.step()
    opt = make(MKORH, model)
    with pytest.raises(ValueError, match="needs each step's loss"):
        opt.step()
    with pytest.raises(ValueError, match="switch_window must be an int >= 1"):
        MKORH(model.parameters(), switch_window=0)
    with pytest.raises(ValueError, match="'stat_decay' = 'x'"):
        MKOR(model.parameters(), stat_decay="x")


def spirals(n=256, seed=0):
    """Two interleaved noisy spirals in the plane: not linearly separable."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=gen) * 3 + 0.5
    label = torch.randint(0, 2, (n,), generator=gen)
    angle = t * 3.0 + label * torch.pi
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], 1)
    return x + 0.05 * torch.randn(n, 2, generator=gen), label


@pytest.mark.parametrize("cls", [MKOR, MKORH])
def test_trains_an_mlp_on_spirals(cls):
    """Full-batch training of a 2-32-32-2 tanh MLP: the cross-entropy falls from 0.69 to
    below 0.15 in 300 steps (MKOR-H switches midway and keeps going down)."""
    x, y = spirals()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 2))
    extra = dict(switch_window=20, switch_threshold=0.02) if cls is MKORH else {}
    opt = cls(optforge.split_matrix_params(model, other="SGD", lr=0.1, momentum=0.9),
              lr=0.1, inv_freq=5, **extra)
    opt.attach(model)
    for _ in range(300):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss.item()) if cls is MKORH else opt.step()
    assert loss.item() < 0.15
    if cls is MKORH:
        assert opt.switched_at is not None
