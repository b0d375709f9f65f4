"""Shared test helpers: reference comparisons and the backends to run on."""
from __future__ import annotations

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is first imported, and importing optforge's
# runtime imports it (torch.compiler.disable loads torch._dynamo, which loads triton):
# decide the mode before anything else.
import tests.triton_env  # noqa: F401,I001 - first, for its side effect

from optforge.runtime.backends import BACKENDS  # noqa: E402

SHAPES = [(1,), (1023,), (7, 13), (257, 129)]

# Tests check numbers, not speed. With two intra-op threads, torch's pool thrashes when
# the machine is busy (numba's pool, other jobs): the torch-backend parity file took 33 s
# on a loaded 2-core machine and 4.6 s with one thread. Numba's own threads are untouched.
torch.set_num_threads(1)


def available_backends() -> list[str]:
    """Every registered backend that can run CPU float32 tensors here."""
    return [name for name, b in BACKENDS.items()
            if b.supports(torch.device("cpu"), torch.float32)]


# The `backend` fixture: the backends that run CPU tensors natively. The Triton
# interpreter (~1 ms a program) is for the tests that ask for it (tests/kernels/
# test_triton*.py and the files that add "triton" themselves, on DEVICE).
NATIVE_BACKENDS = [b for b in available_backends() if b != "triton"]


@pytest.fixture(params=NATIVE_BACKENDS)
def backend(request):
    return request.param


def norm_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (the absolute error when b is all zeros)."""
    a, b = a.double(), b.double()
    scale = b.norm().item()
    return (a - b).norm().item() / (scale if scale > 0 else 1.0)


def run_side_by_side(make_ours, make_ref, shape, steps=20, seed=0, dtype=torch.float32,
                     grad_fn=None):
    """Apply the same gradient sequence to two copies of one parameter.

    ``make_ours(params)`` / ``make_ref(params)`` build optimizers; ``grad_fn(p, k)``
    gives the k-th gradient (default: seeded normal noise plus a pull towards a
    centre of magnitude 1-2, so the trajectory is not pure noise and parameters
    stay O(1): a relative error is then about the update, not about a tiny norm).
    Returns (ours_param, ref_param, opt_ours, opt_ref).
    """
    gen = torch.Generator().manual_seed(seed)
    init = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    centre = (1 + torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)
    p1 = torch.nn.Parameter(init.clone())
    p2 = torch.nn.Parameter(init.clone())
    o1, o2 = make_ours([p1]), make_ref([p2])
    for k in range(steps):
        noise = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        g = noise + 0.5 * (p2.detach() - centre) if grad_fn is None else grad_fn(p2.detach(), k)
        p1.grad, p2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    return p1.detach(), p2.detach(), o1, o2
