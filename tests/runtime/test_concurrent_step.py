"""Concurrent ``step()`` calls on one optimizer are serialised.

Without the lock, two threads read the same ``step`` count and their updates of the
states raced: 300 calls from two threads counted 150-253 steps.
"""
import pickle
import threading

import torch

import optforge
from optforge.catalogue.adahessian import AdaHessian

CALLS = 150  # per thread


def _hammer(opt, threads=2):
    barrier = threading.Barrier(threads)
    errors = []

    def work():
        barrier.wait()
        try:
            for _ in range(CALLS):
                opt.step()
        except Exception as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors


def test_two_threads_count_every_step(backend):
    p = torch.nn.Parameter(torch.zeros(64))
    p.grad = torch.ones(64)
    opt = optforge.SGD([p], lr=1.0, momentum=0.5, backend=backend)
    _hammer(opt)
    assert float(opt.state[p]["step"]) == 2 * CALLS
    ref = torch.nn.Parameter(torch.zeros(64))
    ref.grad = torch.ones(64)
    ref_opt = torch.optim.SGD([ref], lr=1.0, momentum=0.5)
    for _ in range(2 * CALLS):
        ref_opt.step()
    assert torch.equal(p.detach(), ref.detach())


def test_a_subclass_step_is_serialised_and_the_lock_is_reentrant():
    assert getattr(AdaHessian.step, "serialised", False)
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.ones(4)
    opt = optforge.SGD([p], lr=1.0, backend="torch")

    def closure():
        opt.step()  # a nested step from the closure must not deadlock
        return torch.tensor(0.0)
    opt.step(closure)
    assert float(opt.state[p]["step"]) == 2


def test_the_lock_is_not_state():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.ones(4)
    opt = optforge.SGD([p], lr=1.0, backend="torch")
    opt.step()
    assert "_step_lock" in opt.__dict__
    assert "_step_lock" not in opt.__getstate__()
    # the lock is dropped by pickling (and deepcopy): a copy makes its own on first use
    again = pickle.loads(pickle.dumps(opt.__getstate__()))
    assert "_step_lock" not in again
