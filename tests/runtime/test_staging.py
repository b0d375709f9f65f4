"""Any parameter layout on every backend (runtime/staging.py): views, transposes,
channels_last with a differently laid-out gradient, complex parameters, sparse gradients.

A strided parameter must step bit-identically to a dense copy of it stepped alone.
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from tests.conftest import available_backends

BACKENDS = available_backends()


def _device(backend: str):
    return DEVICE if backend == "triton" else torch.device("cpu")


def _layouts(device):
    """(name, parameter, gradient): strided ones that the kernels cannot address as-is."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device)
    base = r(10, 5, 2)
    conv = r(4, 3, 5, 5).to(memory_format=torch.channels_last)
    return [
        ("view", base[..., 0], r(10, 5)),
        ("transposed", r(6, 9).t(), r(9, 6)),
        ("transposed grad too", r(6, 9).t(), r(6, 9).t()),
        ("channels_last, contiguous grad", conv, r(4, 3, 5, 5)),
        ("sliced rows", r(12, 7)[::2], r(6, 7)),
    ]


@pytest.mark.parametrize("cls", [optforge.Adam, optforge.SGD, optforge.LAMB])
@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_steps_like_its_dense_copy(backend, cls):
    kwargs = {"momentum": 0.9} if cls is optforge.SGD else {}
    for name, strided, grad in _layouts(_device(backend)):
        dense = strided.detach().clone(memory_format=torch.contiguous_format)
        before = strided.clone()
        a = strided.requires_grad_()
        b = dense.requires_grad_()
        opt_a = cls([a], lr=0.1, backend=backend, **kwargs)
        opt_b = cls([b], lr=0.1, backend=backend, **kwargs)
        for k in range(3):
            a.grad = grad * (k + 1)
            b.grad = (grad * (k + 1)).contiguous()
            opt_a.step()
            opt_b.step()
        assert not torch.equal(a.detach(), before), name
        assert torch.equal(a.detach(), b.detach()), name
        for key, value in opt_b.state[b].items():
            assert torch.equal(opt_a.state[a][key], value), (name, key)


def test_a_view_writes_through_to_its_base():
    base = torch.zeros(10, 5, 2)
    view = base[..., 0].requires_grad_()
    opt = optforge.SGD([view], lr=1.0, backend="numba")
    view.grad = torch.ones(10, 5)
    opt.step()
    assert torch.equal(base[..., 0], -torch.ones(10, 5))
    assert torch.equal(base[..., 1], torch.zeros(10, 5))  # the other half untouched


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [optforge.Adam, optforge.AdamW, optforge.SGD, optforge.Adagrad,
                                 optforge.RMSprop, optforge.Adamax])
def test_complex_steps_as_its_real_view(cls, backend):
    device = _device(backend)
    z = torch.randn(6, 4, dtype=torch.complex64, device=device)
    r = torch.view_as_real(z).clone()
    pz, pr = z.requires_grad_(), r.requires_grad_()
    opt_z, opt_r = cls([pz], backend=backend), cls([pr], backend=backend)
    for _ in range(3):
        gr = torch.randn(6, 4, 2, device=device)
        pr.grad, pz.grad = gr, torch.view_as_complex(gr.clone())
        opt_z.step()
        opt_r.step()
    assert torch.equal(torch.view_as_real(pz.detach()), pr.detach())
    assert all(v.dtype == torch.complex64 for k, v in opt_z.state[pz].items() if k != "step")


@pytest.mark.parametrize("cls", [optforge.SGD, optforge.Adagrad])
def test_sparse_grad_steps_as_its_dense_sum(cls):
    p = torch.randn(5, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt_p, opt_q = cls([p], lr=0.1), cls([q], lr=0.1)
    i = torch.tensor([[0, 3, 0]])  # uncoalesced: index 0 twice
    grad = torch.sparse_coo_tensor(i, torch.tensor([1.0, -2.0, 0.5]), (5,))
    p.grad, q.grad = grad, grad.to_dense()
    opt_p.step()
    opt_q.step()
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(p.detach()[[1, 2, 4]], q.detach()[[1, 2, 4]])


def test_sparse_grad_refused_where_torch_refuses():
    p = torch.randn(5, requires_grad=True)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([1.0]), (5,))
    before = p.detach().clone()
    with pytest.raises(NotImplementedError, match="Adam does not support sparse gradients"):
        optforge.Adam([p]).step()
    with pytest.raises(RuntimeError, match="weight_decay option is not compatible"):
        optforge.Adagrad([p], weight_decay=0.1).step()
    assert torch.equal(p.detach(), before)
