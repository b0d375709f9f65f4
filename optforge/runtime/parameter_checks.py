"""Why a bucket's parameter cannot be stepped as it is: the slow path of
``Optimizer.check_parameter`` (runtime/optimizer.py), reached only when the cheap test
of the common case (dense gradient of the parameter's shape, dtype and device) fails.

Sparse gradients (where the optimizer takes them) and complex parameters are not
refused here: the runtime stages them for the kernels (runtime/staging.py).
"""
from __future__ import annotations

import torch

from .torch_args import fused_devices


def refuse_parameter(opt, p, label: str, compiled, fused: bool) -> None:
    """Raise torch's error (or ours, naming ``label``: "parameter 1 of group 0") if
    parameter ``p`` and its gradient cannot be stepped by ``compiled``'s kernels."""
    g = p.grad
    name = type(opt).__name__
    where = f"{name}: {label}"
    if g.is_sparse and not opt.supports_sparse_grads:
        # torch refuses them too, except in SGD and Adagrad (and SparseAdam)
        raise NotImplementedError(f"{where} has a sparse gradient; {name} does not "
                                  "support sparse gradients (SGD, Adagrad and SparseAdam do)")
    if p.is_complex() and compiled.plan.matrix_stages:
        raise RuntimeError(f"{name} does not support complex parameters: {where} is "
                           f"{p.dtype} and the rule uses matrix operations")
    if fused and not (p.device.type in fused_devices() and torch.is_floating_point(p)):
        raise RuntimeError(f"{where}: `fused=True` requires all the params to be floating "
                           f"point Tensors of supported devices: {fused_devices()} but "
                           f"{p.dtype} and {p.device.type}")
    if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        raise RuntimeError(f"{where}: gradient {tuple(g.shape)} {g.dtype} on "
                           f"{g.device} does not match the parameter "
                           f"{tuple(p.shape)} {p.dtype} on {p.device}")
    if compiled.plan.matrix_stages and p.dim() < 2:
        raise ValueError(f"{name} ({compiled.spec.name}): {label} has shape "
                         f"{tuple(p.shape)}; the rule uses matrix operations, which "
                         "need parameters with at least 2 dimensions (give biases and "
                         "norms an elementwise rule: a param group with \"rule\": "
                         "optforge.AdamW, see optforge.split_matrix_params)")
