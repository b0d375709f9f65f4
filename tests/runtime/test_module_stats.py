"""optimizer.attach(model): layer inputs and output gradients recorded for matrix rules."""
import pytest
import torch

import optforge
from optforge.dsl import (Rule, batch_size, grad, layer_input, layer_output_grad, matmul, param,
                          transpose)
from optforge.runtime.inputs import InputError


def gradient_from_stats(lr=1.0):
    """For a Linear weight, grad = d^T a exactly: the update uses the hooks' tensors."""
    p, a, d = param(), layer_input(), layer_output_grad()
    return Rule(p - lr * matmul(transpose(d), a) + 0 * grad() + 0 * batch_size(a))


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


@pytest.mark.parametrize("leading", [(6,), (2, 3)], ids=["batch", "batch-and-sequence"])
def test_linear_stats_reproduce_the_weight_gradient(backend, leading):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    weights = _weights(model)
    opt = optforge.Optimizer(weights, gradient_from_stats, backend=backend)
    opt.attach(model)
    model(torch.randn(*leading, 5)).square().sum().backward()
    before = [w.detach().clone() for w in weights]
    opt.step()
    for w, b in zip(weights, before):  # p - (p.grad) exactly, from the recorded tensors
        torch.testing.assert_close(w.detach(), b - w.grad, rtol=1e-5, atol=1e-6)


def test_conv_stats_are_unfolded_patches(backend):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, stride=2), torch.nn.Tanh())
    (w,) = _weights(model)
    opt = optforge.Optimizer([w], gradient_from_stats, backend=backend)
    stats = opt.attach(model)
    model(torch.randn(3, 2, 5, 5)).sum().backward()
    assert stats.inputs[id(w)].shape == (3 * 9, 2 * 3 * 3)
    assert stats.output_grads[id(w)].shape == (3 * 9, 4)
    before = w.detach().clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - w.grad, rtol=1e-5, atol=1e-6)


def test_errors_name_the_problem():
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    w = model[0].weight
    opt = optforge.Optimizer([w], gradient_from_stats)
    w.grad = torch.ones_like(w)
    with pytest.raises(InputError, match=r"call optimizer.attach\(model\)"):
        opt.step()
    opt.attach(model)
    with pytest.raises(InputError, match="no layer_input recorded yet"):
        opt.step()
    stray = torch.nn.Parameter(torch.zeros(2, 4))
    stray.grad = torch.ones(2, 4)
    other = optforge.Optimizer([stray], gradient_from_stats)
    other.attach(model)
    with pytest.raises(InputError, match="not one"):
        other.step()
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        opt.attach(torch.nn.Tanh())


def test_remove_detaches_the_hooks():
    model = torch.nn.Linear(3, 2)
    opt = optforge.Optimizer([model.weight], gradient_from_stats)
    stats = opt.attach(model)
    stats.remove()
    model(torch.randn(4, 3)).sum().backward()
    assert not stats.inputs and not stats.output_grads
