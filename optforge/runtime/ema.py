"""Evaluate with averaged weights: swap each parameter with its EMA state and back."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def swap_ema(optimizer: torch.optim.Optimizer, name: str = "param_ema"):
    """Inside the block every parameter holds its ``with_ema`` average; on exit (even on
    error) the trained weights come back, bit for bit."""
    swapped = []
    try:
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    average = optimizer.state.get(p, {}).get(name)
                    if average is None:
                        continue
                    if average.shape != p.shape:
                        raise RuntimeError(f"swap_ema: state {name!r} of a parameter has shape "
                                           f"{tuple(average.shape)}, not {tuple(p.shape)}")
                    saved = p.detach().clone()
                    p.copy_(average)
                    swapped.append((p, saved))
        if not swapped:
            raise RuntimeError(f"swap_ema: no parameter has a {name!r} state; build the "
                               "optimizer with optforge.dsl.with_ema(rule) and take a step")
        yield optimizer
    finally:
        with torch.no_grad():
            for p, saved in swapped:
                p.copy_(saved)
