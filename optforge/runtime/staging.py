"""Any parameter layout on every backend: kernels see dense real tensors.

The kernels address a parameter's elements as one flat run (triton: contiguous only;
numba and torch: contiguous, or one dense permuted layout shared by the parameter, its
gradient and its states, e.g. channels_last throughout). Everything else is staged:

* a sparse gradient (optimizers that accept one: SGD, Adagrad) is handed over dense
  (SparseAdam's lazy meaning, only the elements it holds, is ``runtime/lazy_sparse.py``);
* a complex parameter (with its gradient and states) is handed over as
  ``torch.view_as_real``, as torch.optim does: a view, so the kernel writes in place;
* a parameter whose tensors are not laid out that way (a view such as
  ``torch.randn(10, 5, 2)[..., 0]``, a transposed weight, channels_last with a
  contiguous gradient) is stepped on dense copies, and the parameter and states are
  written back after the kernel succeeded (so a failing kernel leaves them untouched).

A staged parameter steps bit-identically to a dense copy of it: the kernel runs the same
code over the same values in the same order. The copies cost two extra passes over the
parameter and its states (see docs/user-guide for the measured cost); dense parameters,
the usual case, pass straight through after two ``is_contiguous()`` checks.
"""
from __future__ import annotations

import torch

from ..kernels.raw_memory import dense_layout

_IS_CONTIGUOUS, _IS_COMPLEX = torch.Tensor.is_contiguous, torch.Tensor.is_complex
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64,
         torch.complex32: torch.float16}


def kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels run a bucket in: a complex dtype's real counterpart."""
    return _REAL.get(dtype, dtype)


def _native(tensors: list, p: torch.Tensor, permuted_ok: bool) -> bool:
    """Can the kernel read parameter ``p`` and its other tensors as they are?"""
    present = [t for t in tensors if t is not None]
    if p.is_complex() or any(t.layout != torch.strided for t in present):
        return False
    if all(t.is_contiguous() for t in present):
        return True
    return permuted_ok and dense_layout(p) and all(t.stride() == p.stride() for t in present)


def _as_kernel_tensor(t):
    """(what the kernel gets, whether it is a copy that must be written back)."""
    if t is None:
        return None, False
    if t.layout != torch.strided:  # a sparse gradient (SGD, Adagrad): its dense sum
        t = t.to_dense()
    if t.is_complex():
        t = torch.view_as_real(t)  # a view: written in place
    if t.is_contiguous():
        return t, False
    return t.contiguous(), True


class Staged:
    """A launcher that stages the parameters its kernels cannot address as they are."""

    def __init__(self, inner, permuted_ok: bool):
        self.inner = inner
        self.permuted_ok = permuted_ok  # the backend reads one shared dense permutation
        # read on every step: kept here rather than found through __getattr__
        self.checks_tensors = getattr(inner, "checks_tensors", False)

    def __getattr__(self, name):  # everything else (source, plan...) is the launcher's
        return getattr(self.inner, name)

    def _staged_indices(self, params, grads, states) -> list[int]:
        # the usual bucket, checked with C-level maps (it runs on every step): dense real
        # parameters and gradients (a sparse gradient is not contiguous); states are made
        # like their parameter
        if (all(map(_IS_CONTIGUOUS, params)) and all(map(_IS_CONTIGUOUS, grads))
                and not any(map(_IS_COMPLEX, params))):
            return []
        return [j for j, (p, g) in enumerate(zip(params, grads))
                if not _native([p, g] + [s[j] for s in states], p, self.permuted_ok)]

    def _stage(self, params, grads, states, staged):
        """Copies of the lists with staged entries replaced; the (original, copy) pairs
        to write back (parameters and states, never gradients)."""
        params, grads, states = list(params), list(grads), [list(s) for s in states]
        back = []
        for j in staged:
            for column, writes in [(params, True), (grads, False)] + [(s, True) for s in states]:
                original = column[j]
                column[j], copied = _as_kernel_tensor(original)
                if copied and writes:
                    back.append((original, column[j]))
        return params, grads, states, back

    def check(self, params, grads, states, labels):
        """The launcher's check of what its kernels will get (the step's check stage).
        What it derives (address tables) is reused by the launch only when nothing is
        staged: staged copies are made anew at the launch, at other addresses."""
        staged = self._staged_indices(params, grads, states)
        if not staged:
            return self.inner.check(params, grads, states, labels)
        params, grads, states, _ = self._stage(params, grads, states, staged)
        self.inner.check(params, grads, states, labels)
        return None

    def __call__(self, params, grads, states, scalars, **kwargs):
        # ``prepared`` comes from check() of these very tensors, which staged none
        staged = [] if kwargs.get("prepared") is not None else self._staged_indices(
            params, grads, states)
        if not staged:
            return self.inner(params, grads, states, scalars, **kwargs)
        kwargs.pop("prepared", None)  # derived from the check's copies, not these
        params, grads, states, back = self._stage(params, grads, states, staged)
        result = self.inner(params, grads, states, scalars, **kwargs)
        for original, copy in back:  # only after the kernel succeeded
            (torch.view_as_real(original) if original.is_complex() else original).copy_(copy)
        return result

    def reduce(self, stage, params, grads, states, scalars, reduced, prepared=None):
        # ``prepared`` comes from check() of these very tensors, which staged none
        staged = [] if prepared is not None else self._staged_indices(params, grads, states)
        if not staged:
            return self.inner.reduce(stage, params, grads, states, scalars, reduced,
                                     prepared=prepared)
        # a reduce stage writes nothing: no write-back
        params, grads, states, _ = self._stage(params, grads, states, staged)
        return self.inner.reduce(stage, params, grads, states, scalars, reduced)


def wrap(launcher, reduces: bool, strided_tensors: bool) -> Staged:
    """``launcher`` staged for its backend: ``strided_tensors`` is the backend's declared
    capability (kernels/protocol.Capabilities) to read one shared dense permuted layout;
    without it (triton) only contiguous tensors reach the kernels.

    A rule that ``reduces`` (norms, sums) sums in memory order: a permuted layout would
    sum in another order than its dense copy and could differ in the last bit, so its
    permuted parameters are staged too."""
    return Staged(launcher, permuted_ok=strided_tensors and not reduces)
