"""Step on the numba backend, fork, step in the child; report whether the child's step
equals the parent's same step (JSON). Run by test_where_users_run.py in a fresh
process, so that the threading layer is this process's own choice (or the env's).

With ``CHILD_TORCH_MATH=1`` the child computes its gradients with torch (after the
fork), else it gets gradients made before the fork.
"""
import json
import multiprocessing as mp
import os
import sys

import torch

import optforge

torch.set_num_threads(1)  # torch's own OpenMP pool is not fork-safe either: not tested here
N = 300_000  # above the launcher's PARALLEL_MIN: the parallel path runs in the parent


def _make():
    gen = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(N, generator=gen)) for _ in range(2)]
    opts = [optforge.Adam([ps[0]], lr=1e-2, backend="numba"),
            optforge.LAMB([ps[1]], lr=1e-2, backend="numba")]
    return ps, opts


def _grads(ps, k):
    return [torch.sin(p.detach() * (k + 1)) for p in ps]


def _step(ps, opts, grads):
    for p, g in zip(ps, grads):
        p.grad = g
    for opt in opts:
        opt.step()


def _child(ps, opts, queue, grads):
    _step(ps, opts, _grads(ps, 1) if grads is None else grads)
    # as numpy arrays: torch would share tensors by file descriptor, which needs the
    # child alive until the parent has received them
    queue.put([p.detach().numpy().copy() for p in ps])


if __name__ == "__main__":
    ps, opts = _make()
    _step(ps, opts, _grads(ps, 0))
    ahead = None if os.environ.get("CHILD_TORCH_MATH") == "1" else _grads(ps, 1)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(ps, opts, queue, ahead))
    child.start()
    try:
        got = queue.get(timeout=120)
    except Exception as exc:  # noqa: BLE001 - killed or hung: reported below
        print(repr(exc), file=sys.stderr)
        got = None
    child.join(30)
    if child.is_alive():
        child.kill()
    _step(ps, opts, _grads(ps, 1))
    import numba
    same = got is not None and all(torch.equal(torch.from_numpy(a), p.detach())
                                   for a, p in zip(got, ps))
    json.dump({"exitcode": child.exitcode, "same": same, "layer": numba.threading_layer()},
              sys.stdout)
