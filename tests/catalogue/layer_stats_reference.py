"""Shared pieces of the K-FAC / EK-FAC / natural-gradient tests.

The references are fed by their own hooks (written here, independently of
``optimizer.attach``): each supported layer's input, unfolded to patches for Conv2d, and
the gradient of the loss with respect to its output.

``drive`` trains one model with optforge and, on every step, hands the *same* gradients
and layer statistics to a plain-torch reference, which keeps its own float64 copy of
each weight and its own states. Comparing the weights after 10 steps then measures the
optimizer's arithmetic (states, intervals, inverses, momentum) without the chaotic
amplification a separately trained second model would add.
"""
from __future__ import annotations

import io

import torch
from torch import nn

import optforge


class Recorder:
    """Inputs ``a`` (n x cols) and output gradients ``ds`` (n x rows) per weight."""

    def __init__(self, model: nn.Module):
        self.a, self.ds = {}, {}
        for layer in model.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.register_forward_hook(self._hook)

    def _hook(self, layer, args, out):
        x = args[0].detach()
        if isinstance(layer, nn.Conv2d):
            x = nn.functional.unfold(x, layer.kernel_size, layer.dilation, layer.padding,
                                     layer.stride).transpose(1, 2)
        self.a[layer.weight] = x.reshape(-1, x.shape[-1]).double()

        is_conv = isinstance(layer, nn.Conv2d)

        def keep(g, w=layer.weight, conv=is_conv):
            g = g.detach()
            if conv:
                g = g.flatten(2).transpose(1, 2)
            self.ds[w] = g.reshape(-1, g.shape[-1]).double()
        out.register_hook(keep)


def mlp(seed=0, sizes=(5, 7, 3)) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.Tanh(), nn.Linear(sizes[1], sizes[2]))


def conv_net(seed=0) -> nn.Module:
    """Conv2d(2 -> 3, 3x3) on 5x5 images (L = 9 positions), then a Linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4))


def batches(model: nn.Module, steps: int, n=16, seed=1):
    """(x, y) classification batches shaped for ``model`` (an mlp or a conv_net)."""
    gen = torch.Generator().manual_seed(seed)
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    shape = (n, first.in_features) if isinstance(first, nn.Linear) else (n, 2, 5, 5)
    return [(torch.randn(shape, generator=gen),
             torch.randint(0, last.out_features, (n,), generator=gen)) for _ in range(steps)]


def make_optforge(cls, model, backend="torch", bias_lr=0.05, **hyper):
    """``cls`` on the weights, plain SGD(bias_lr) on the biases; attached to ``model``."""
    opt = cls(optforge.split_matrix_params(model, other="SGD", lr=bias_lr), backend=backend,
              **hyper)
    opt.attach(model)
    return opt


def drive(model, opt, reference, data, bias_lr=0.05):
    """Train ``model`` with ``opt``; feed ``reference(t, W, grad, a, ds)`` (float64) the same
    statistics each step. Returns {weight: (ours, reference's)} after the last step."""
    rec = Recorder(model)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    ref_w = {w: w.detach().double().clone() for w in weights}
    for t, (x, y) in enumerate(data, 1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for w in weights:
            g = w.grad.double().reshape(w.shape[0], -1)
            ref_w[w] = reference(t, w, ref_w[w], g, rec.a[w], rec.ds[w])
        opt.step()
    return {w: (w.detach().double(), ref_w[w]) for w in weights}


class PlainSGDMomentum:
    """torch.optim.SGD (dampening 0) on a preconditioned direction, per weight: the last
    stage every rule here shares."""

    def __init__(self, lr, momentum, weight_decay):
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.buf = {}

    def __call__(self, w, W, direction):
        d = direction.reshape(W.shape) + self.wd * W
        if self.momentum:
            prev = self.buf.get(w)
            d = d if prev is None else self.momentum * prev + d
            self.buf[w] = d
        return W - self.lr * d


def through_disk(state_dict):
    """A saved and reloaded copy (a state_dict holds the optimizer's live tensors)."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf)


def resumed_copy_matches(cls, hyper: dict, steps: int, split: int):
    """Train ``cls`` on an mlp for ``split`` steps, reload model and optimizer (through
    disk) into a fresh pair, run both the remaining steps; asserts the parameters stay
    bit-identical and returns the resumed optimizer and model for further checks."""
    data = batches(mlp(), steps)

    def run(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    m1 = mlp()
    o1 = make_optforge(cls, m1, **hyper)
    run(m1, o1, data[:split])
    m2 = mlp(seed=5)
    m2.load_state_dict(m1.state_dict())
    o2 = make_optforge(cls, m2, **hyper)
    o2.load_state_dict(through_disk(o1.state_dict()))
    run(m1, o1, data[split:])
    run(m2, o2, data[split:])
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    return o2, m2
