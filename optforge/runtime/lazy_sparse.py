"""Lazy sparse staging: a sparse gradient steps only the elements it holds.

``runtime/staging.py`` hands a sparse gradient to the kernels as its dense sum, which is
what torch's SGD and Adagrad compute. torch.optim.SparseAdam means something else: the
elements the gradient does not hold are not touched at all (their moments do not decay,
the parameter does not move). This wrapper gives a launcher that meaning:

* the gradient is coalesced (repeated indices summed, as torch does: the update is not
  linear, so ``g[i] = a`` then ``g[i] = b`` must step once with ``a + b``);
* the parameter and each state are gathered at the gradient's indices, once per tensor,
  into dense ``(nnz, *dense_dims)`` tensors (a hybrid gradient such as
  ``nn.Embedding(sparse=True)``'s holds whole rows: ``p[rows]`` gathers those rows);
* the kernel runs over the gathered values like any dense bucket (every backend);
* the parameter and the states the rule stores are scattered back, after the kernel
  succeeded (an error leaves everything as it was).

A gradient with no values leaves its parameter and states alone (torch skips it too).
The gather happens in the step's check phase and is handed to the launch as its
``prepared`` value, so each tensor is gathered once per step. Rules with reductions or
matrix stages are refused: a norm over "the elements present" is not a defined meaning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Gathered:
    """One bucket's tensors as the kernel sees them, and where to scatter them back."""

    kept: list[int]  # bucket positions with a non-empty gradient
    where: list  # per kept parameter: its index tuple (one index tensor per sparse dim)
    params: list
    grads: list
    states: list[list]
    inner: object = None  # what the wrapped launcher's check derived


def _gradient_entries(g: torch.Tensor):
    """(index tuple, values) of a gradient: its coalesced entries if sparse, else all."""
    if g.layout == torch.strided:
        return None, g
    g = g.coalesce()
    return tuple(g.indices()), g.values().contiguous()


class LazySparse:
    """``inner`` (a bucket launcher) run over the elements a sparse gradient holds.

    ``written[k]``: whether the rule stores state column ``k`` (it is scattered back);
    inputs and buffers are gathered but never written back.
    """

    def __init__(self, inner, written: list[bool]):
        self.inner = inner
        self.written = written

    def __getattr__(self, name):  # source, checks_tensors...: the wrapped launcher's
        return getattr(self.inner, name)

    def gather(self, params, grads, states) -> Gathered:
        kept, where, out_p, out_g = [], [], [], []
        out_s = [[] for _ in states]
        for j, (p, g) in enumerate(zip(params, grads)):
            index, values = _gradient_entries(g)
            if index is not None and values.shape[0] == 0:
                continue  # nothing present: nothing moves
            kept.append(j)
            where.append(index)
            out_g.append(values)
            if index is None:  # a dense gradient steps every element, in place
                out_p.append(p)
                for column, state in zip(out_s, states):
                    column.append(state[j])
                continue
            out_p.append(p.detach()[index])
            for column, state in zip(out_s, states):
                value = state[j]
                column.append(value[index] if isinstance(value, torch.Tensor)
                              and value.shape == p.shape else value)
        return Gathered(kept, where, out_p, out_g, out_s)

    def check(self, params, grads, states, labels=None) -> Gathered:
        gathered = self.gather(params, grads, states)
        if gathered.kept:
            names = None if labels is None else [labels[j] for j in gathered.kept]
            gathered.inner = self.inner.check(gathered.params, gathered.grads,
                                              gathered.states, names)
        return gathered

    def __call__(self, params, grads, states, scalars, reduced=None, prepared=None):
        gathered = prepared if isinstance(prepared, Gathered) else self.check(
            params, grads, states)
        if not gathered.kept:
            return None
        kwargs = {} if gathered.inner is None else {"prepared": gathered.inner}
        result = self.inner(gathered.params, gathered.grads, gathered.states, scalars,
                            **kwargs)
        for k, j in enumerate(gathered.kept):  # only after the kernel succeeded
            index = gathered.where[k]
            if index is None:
                continue  # stepped in place
            params[j].detach().index_put_(index, gathered.params[k])
            for column, written, state in zip(gathered.states, self.written, states):
                if written:
                    state[j].index_put_(index, column[k])
        return result

    def reduce(self, stage, params, grads, states, scalars, reduced, prepared=None):
        raise NotImplementedError("lazy sparse staging steps only the elements a gradient "
                                  "holds; a reduction over them has no defined meaning")


def wrap(launcher, plan) -> LazySparse:
    """``launcher`` (for ``plan``) stepping only the elements sparse gradients hold."""
    if plan.reductions or plan.matrix_stages:
        raise ValueError(f"rule {plan.rule_name!r} has reductions or matrix stages; lazy "
                         "sparse staging runs elementwise rules only")
    return LazySparse(launcher, [d.kind == "state" for d in plan.states.values()])
