"""torch's constructor conventions (runtime/torch_args.py): flags in param_groups, range
checks with torch's messages, differentiable steps, Adam's decoupled_weight_decay."""
import pytest
import torch

import optforge

SIX = ["SGD", "Adam", "AdamW", "Adamax", "Adagrad", "RMSprop"]


@pytest.mark.parametrize("name", SIX)
def test_param_group_keys_are_torchs(name):
    p = torch.nn.Parameter(torch.randn(3))
    ours = getattr(optforge, name)([p]).param_groups[0]
    theirs = getattr(torch.optim, name)([p]).param_groups[0]
    assert set(ours) == set(theirs)
    for key in ("foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay"):
        if key in theirs:
            assert ours[key] == theirs[key], key


@pytest.mark.parametrize("kwargs,message", [
    (dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(0.9, torch.tensor(0.99))), "betas must be either both floats or both Tensors"),
    (dict(lr=torch.tensor([1e-3, 1e-3])), "Tensor lr must be 1-element"),
    (dict(lr=torch.tensor(1e-3), foreach=True), "lr as a Tensor is not supported"),
])
def test_adam_refuses_like_torch(kwargs, message):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=message):
        torch.optim.Adam([p], **kwargs)
    with pytest.raises(ValueError, match=f"Adam: {message}"):
        optforge.Adam([p], **kwargs)


@pytest.mark.parametrize("name,kwargs,message", [
    ("SGD", dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    ("SGD", dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    ("Adagrad", dict(lr_decay=-0.5), "Invalid lr_decay value: -0.5"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value"),
    ("RMSprop", dict(alpha=-1.0), "Invalid alpha value: -1.0"),
    ("Adamax", dict(betas=(0.0, 1.0)), "Invalid beta parameter at index 1: 1.0"),
])
def test_ranges_refused_like_torch(name, kwargs, message):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=message):
        getattr(torch.optim, name)([p], **kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(optforge, name)([p], **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(foreach=True, fused=True), "`fused` and `foreach` cannot be `True` together"),
    (dict(fused=True, differentiable=True), "`fused` does not support `differentiable`"),
])
def test_flag_pairs_refused_like_torch(kwargs, message):
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(RuntimeError, match=message):
        optforge.SGD([p], **kwargs)


def test_a_bad_param_group_leaves_the_optimizer_as_it_was():
    p, q = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    opt = optforge.Adam([p])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.add_param_group({"params": [q], "lr": -1.0})
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [p]
    opt.add_param_group({"params": [q], "lr": 0.5})  # q is free to join after all


def test_decoupled_weight_decay_makes_adam_adamw():
    w = torch.randn(20)
    a, b = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    adam = optforge.Adam([a], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)
    adamw = optforge.AdamW([b], lr=0.1, weight_decay=0.1)
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    for k in range(3):
        a.grad = torch.full((20,), 0.3 * k - 0.2)
        b.grad = a.grad.clone()
        adam.step()
        adamw.step()
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        optforge.AdamW([b], decoupled_weight_decay=False)


# (SGD without momentum: torch's SGD detaches its first momentum buffer, clone(grad).detach(),
# so no gradient reaches the first step's grad there; optforge's buffer keeps it)
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_differentiable_step_is_seen_by_autograd_as_in_torch(name):
    grads = {}
    for lib in (torch.optim, optforge):
        gen = torch.Generator().manual_seed(0)
        p0 = torch.randn(5, generator=gen).requires_grad_()
        g = torch.randn(5, generator=gen).requires_grad_()
        h = torch.randn(5, generator=gen)
        p = p0.clone()  # a non-leaf: the step may write it in place
        opt = getattr(lib, name)([p], lr=0.1, differentiable=True)
        for k in range(3):
            p.grad = g + k * h  # a different direction every step
            opt.step()
        grads[lib] = torch.autograd.grad((p * p).sum(), (p0, g))
    for ours, theirs in zip(grads[optforge], grads[torch.optim]):
        torch.testing.assert_close(ours, theirs)


def test_differentiable_needs_the_torch_backend():
    p = torch.nn.Parameter(torch.randn(3))
    assert optforge.Adam([p], differentiable=True).backend == "torch"
    with pytest.raises(ValueError, match="differentiable=True needs backend='torch'"):
        optforge.Adam([p], differentiable=True, backend="numba")
    with pytest.raises(ValueError, match="no gradient would reach it"):
        optforge.Adam([p], differentiable=True, lr=torch.tensor(0.1, requires_grad=True))
