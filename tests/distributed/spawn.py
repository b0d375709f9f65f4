"""Run a function on N gloo ranks on localhost, bounded in time.

Ranks are forked from a forkserver that has imported torch, numba and optforge once
(``PRELOAD``): a spawned rank spent ~10 s importing them on a loaded 2-core machine, so
4 ranks took over a minute; the server itself has never run a kernel, so no numba or
torch thread pool is forked (forking the pytest process itself would fork those). Ranks
meet through a FileStore in a fresh temporary directory, so parallel test runs never
compete for a port. Every rank's collectives time out
after ``collective_s``, and the whole run is killed after ``timeout_s``: a hang is a
failure, never a stuck CI job.
"""
from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PRELOAD = ["torch", "torch.distributed", "numba", "optforge.catalogue", "optforge.distributed",
           "tests.distributed.collective_workers", "tests.distributed.verdict_workers",
           "tests.distributed.matrix_state_workers",
           "torch.distributed.fsdp", "tests.distributed.fsdp_workers",
           "tests.distributed.workers", "torch.distributed.checkpoint",
           "torch.nn.parallel", "torch.distributed.optim"]


def _entry(rank, fn, world, store_dir, out_dir, collective_s, args):
    torch.set_num_threads(1)  # N ranks share 2 cores
    import numba
    numba.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank,
                            world_size=world, timeout=timedelta(seconds=collective_s))
    try:
        fn(rank, world, out_dir, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world: int, *args, timeout_s: float = 55.0, collective_s: float = 30.0,
              out_dir: str | None = None) -> str:
    """Run ``fn(rank, world, out_dir, *args)`` on ``world`` gloo ranks; returns ``out_dir``,
    where the ranks leave their results. A rank's exception fails the run with its
    traceback."""
    store_dir = tempfile.mkdtemp(prefix="optforge-store-")
    out_dir = out_dir or tempfile.mkdtemp(prefix="optforge-ranks-")
    mp.get_context("forkserver").set_forkserver_preload(PRELOAD)
    ctx = mp.start_processes(_entry, args=(fn, world, store_dir, out_dir, collective_s, args),
                             nprocs=world, join=False, start_method="forkserver")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks of {fn.__name__} ran past {timeout_s} s")
    finally:
        for proc in ctx.processes:  # only the processes this run started
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return out_dir


def load(out_dir: str, name: str, rank: int):
    return torch.load(os.path.join(out_dir, f"{name}-rank{rank}.pt"), weights_only=False)


def save(out_dir: str, name: str, rank: int, value) -> None:
    torch.save(value, os.path.join(out_dir, f"{name}-rank{rank}.pt"))
