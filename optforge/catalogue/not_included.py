"""Optimizers asked for but not in the catalogue, and precisely why: a closing section of
``docs/catalogue.md`` (``reference.catalogue_markdown``), so the reason is kept beside the
formulas and changes with the code that would lift it."""
from __future__ import annotations

KRON = """
Kron (Li 2018, "Preconditioned Stochastic Gradient Descent", arXiv:1512.04202; Evan
Walters' `kron`) keeps one triangular factor Q_i per tensor dimension (a diagonal one
for dimensions above `max_size`) and, on a random fraction of the steps (in `kron`
probability 1 for 500 steps, then max(0.03, exp(-0.001 (t - 500)))), updates each from a
fresh Gaussian probe V: A = Q G, B = Q^-T V by triangular solves, Q <- Q - lr_Q / ||A
A^T - B B^T||_lb · triu(A A^T - B B^T) Q, where ||.||_lb is a spectral-norm lower bound
computed from the row or column of largest norm. The update is then Q^T Q G (per
dimension), RMS-clipped. optforge's matrix stage cannot say this today: (1) it has no
triangular solve and no `triu` projection (only LU `solve`, `inverse`, `inv_root`,
products); (2) the lower bound needs an argmax-selected row or column, a data-dependent
index the DSL has no node for (`fnorm` is an upper bound and changes the step size); (3)
random draws in a rule are scalars only (`random_scalar`): a probe shaped like the
gradient would need a new input provider (`given`, as the Hutchinson probes are made); (4) matrix states are rows x rows or cols x cols of the parameter's 2-D view,
not one factor per dimension of an N-D tensor, and the triangular/diagonal choice per
dimension would be a rule variant per shape; (5) the probabilistic update needs a lazy
branch on a random scalar so that skipped steps do no matrix work. Rewriting it with a
dense Q, LU solves and a Frobenius normaliser would run, but it would not be Kron and
would not match `kron`; it waits for those DSL nodes.
"""

# (name, paragraph) in display order; paragraphs are wrapped here, one line in the docs
NOT_INCLUDED: tuple[tuple[str, str], ...] = (
    ("Kron (PSGD)", " ".join(KRON.split())),
)


def not_included_markdown() -> list[str]:
    lines = ["## Not in the catalogue", ""]
    for name, why in NOT_INCLUDED:
        lines += [f"### {name}", "", why, ""]
    return lines
