"""Hessian-vector products from autograd and a bounded conjugate-gradient solver.

Vectors are lists of tensors shaped like the parameters (never flattened into one buffer:
parameters may live on different devices or dtypes). All products are double backward
passes through the closure's graph: H v = d/dp <grad f, v>, and the mixed second
derivative D_xy f v = d/dx <grad_y f, v> (a block of the Hessian, never formed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def grad_with_graph(owner: str, loss: torch.Tensor, params) -> list[torch.Tensor]:
    """grad f with its own graph kept (create_graph), zeros for unused parameters."""
    try:
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    except RuntimeError as err:
        if "second time" in str(err) or "freed" in str(err):
            raise RuntimeError(f"{owner}: the closure's graph was already used by a backward() "
                               "call; return the loss without calling backward() (the "
                               "optimizer differentiates it itself)") from None
        raise
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def vjp(outputs: list[torch.Tensor], wrt, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """d/dwrt <outputs, vectors>, the graph kept for further products.

    An output with no graph (a gradient that is constant, e.g. of a linear term) contributes
    nothing; so does a parameter the outputs do not depend on.
    """
    live = [(o, v) for o, v in zip(outputs, vectors) if o.requires_grad]
    if not live:
        return [torch.zeros_like(p) for p in wrt]
    outs, vecs = zip(*live)
    res = torch.autograd.grad(outs, wrt, grad_outputs=[v.detach() for v in vecs],
                              retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if r is None else r.detach() for p, r in zip(wrt, res)]


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """<a, b> accumulated in float64 (a CG recurrence loses digits fast in float32)."""
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b))


def axpy(alpha, x: list[torch.Tensor], y: list[torch.Tensor]) -> list[torch.Tensor]:
    """alpha x + y."""
    return [yi + (alpha * xi.double()).to(yi.dtype) for xi, yi in zip(x, y)]


@dataclass
class CGResult:
    solution: list[torch.Tensor]
    iterations: int
    residual: float          # ||b - A x|| at exit
    negative_curvature: bool  # stopped on p^T A p <= 0 (A not positive definite)


def conjugate_gradient(apply_a, b: list[torch.Tensor], *, max_iter: int, tol: float) -> CGResult:
    """Solve A x = b for a symmetric A given as ``apply_a(v) -> A v``, from x = 0.

    Stops when ||r|| <= tol ||b||, after ``max_iter`` products, or when a search direction
    has p^T A p <= 0 (A indefinite along it): then the iterate so far is returned (on the
    first iteration that is x = 0; callers decide what to do, see newton_cg.py).
    """
    x = [torch.zeros_like(t) for t in b]
    r = [t.detach().clone() for t in b]
    p = [t.clone() for t in r]
    rr = dot(r, r)
    target = tol * math.sqrt(float(rr))
    if math.sqrt(float(rr)) == 0.0:
        return CGResult(x, 0, 0.0, False)
    for k in range(max_iter):
        ap = apply_a(p)
        pap = dot(p, ap)
        if not float(pap) > 0:
            return CGResult(x, k, math.sqrt(float(rr)), True)
        alpha = rr / pap
        x = axpy(alpha, p, x)
        r = axpy(-alpha, ap, r)
        rr_new = dot(r, r)
        if math.sqrt(float(rr_new)) <= target:
            return CGResult(x, k + 1, math.sqrt(float(rr_new)), False)
        p = axpy(rr_new / rr, p, r)  # r + beta p
        rr = rr_new
    return CGResult(x, max_iter, math.sqrt(float(rr)), False)
