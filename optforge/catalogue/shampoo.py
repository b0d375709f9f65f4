"""Shampoo — Gupta, Koren & Singer (2018), "Shampoo: Preconditioned Stochastic Tensor
Optimization", arXiv:1802.09568, Algorithm 1 (the matrix case), with the layer-wise
grafting, preconditioner interval and start step of distributed Shampoo (Anil et al. 2020,
arXiv:2002.09018).

Every parameter is seen as its 2-D view G (rows, cols) = (shape[0], numel / shape[0]) (a
conv kernel (out, in, kh, kw) is (out, in*kh*kw)), so there are exactly two Kronecker
factors and the root is 1/4 for every parameter; 0-D and 1-D parameters are refused. With
g = grad + weight_decay * p (coupled weight decay: the factors see it) on step t:

    L_t = L_{t-1} + G G^T,  R_t = R_{t-1} + G^T G,  L_0 = R_0 = 0   (the paper's sums), or
    with ``moving_average=True``: L_t = beta2 L_{t-1} + (1 - beta2) G G^T, same for R;
    P_L = (L_t + eps I)^(-1/4),  P_R = (R_t + eps I)^(-1/4)   (inv_root: float64 eigh,
          eigenvalues clamped at 0 before eps is added: eps plays the paper's L_0 = eps I),
          recomputed on steps 1, 1 + f, 1 + 2f... (f = precondition_frequency) from the
          factors that include this step's gradient, and kept in between;
    S = P_L G P_R                                            (the Shampoo direction);
    grafting: D = S * ||A||_F / ||S||_F (D = 0 where S = 0), where A is the Adagrad
          direction g / (sqrt(sum of g^2) + graft_eps) (``graft_sgd=True``: A = g), so the
          layer's step length is Adagrad's (or SGD's) and only the direction is Shampoo's;
          ``grafting=False``: D = S;
    before ``start_preconditioning_step``: D = A (grafting) or g (no grafting); the
          factors and the graft accumulator are updated from step 1 regardless;
    buf_t = momentum buf_{t-1} + D  (heavy ball, torch SGD's dampening = 0);
    p <- p - lr buf_t.

Without moving_average, with momentum = 0, weight_decay = 0, no grafting and f = 1 this is exactly
Algorithm 1 with L_0 = eps I (and pytorch-optimizer's Shampoo for 2-D weights).
"""
from ..dsl import (Rule, fnorm, grad, inv_root, matmul, matrix_state, param, sqrt, state,
                   step, transpose, where)
from ..dsl.matrix import every
from ._base import CatalogueOptimizer


def shampoo(lr=1e-1, momentum=0.0, weight_decay=0.0, beta2=0.999, eps=1e-6,
            precondition_frequency=1, start_preconditioning_step=1, graft_eps=1e-10,
            grafting=True, graft_sgd=False, moving_average=False):
    p, t = param(), step()
    g = grad() + weight_decay * p
    L, R = (matrix_state("L", ("rows", "rows"), init="zeros"),
            matrix_state("R", ("cols", "cols"), init="zeros"))
    decay, weight = (beta2, 1 - beta2) if moving_average else (1, 1)
    L = decay * L + weight * matmul(g, transpose(g))
    R = decay * R + weight * matmul(transpose(g), g)
    # stale roots between refreshes; identity before the first (never read: step 1 refreshes)
    PL = every(precondition_frequency, inv_root(L, 4, eps),
               matrix_state("PL", ("rows", "rows"), init="identity"))
    PR = every(precondition_frequency, inv_root(R, 4, eps),
               matrix_state("PR", ("cols", "cols"), init="identity"))
    left = matmul(PL, g)
    S = matmul(left, PR)
    new = dict(L=L, R=R, PL=PL, PR=PR)
    if grafting:
        if graft_sgd:
            graft = g
        else:
            total = state("graft_sum") + g * g
            graft = g / (sqrt(total) + graft_eps)
            new["graft_sum"] = total
        # ||A||_F / ||S||_F, 0 when S vanishes (then A does too), folded into the last
        # product so the matrix stage hands the kernel one buffer rather than three
        scale = where(fnorm(S) > 0, fnorm(graft) / fnorm(S), 0)
        direction = matmul(left, PR * scale)
    else:
        graft, direction = g, S
    direction = where(t < start_preconditioning_step, graft, direction)
    buf = momentum * state("momentum_buffer") + direction
    new["momentum_buffer"] = buf
    return Rule(p - lr * buf, **new)


class Shampoo(CatalogueOptimizer):
    """Kronecker-factored full-matrix Adagrad on each weight's 2-D view, grafted onto Adagrad."""

    rule = shampoo
    source = ("Gupta, Koren & Singer (2018), arXiv:1802.09568, Algorithm 1; grafting and "
              "intervals as in Anil et al. (2020), arXiv:2002.09018")
