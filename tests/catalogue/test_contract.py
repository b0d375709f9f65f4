"""One contract over the whole catalogue (as optax tests every alias): each registered
optimizer cites its source, renders as LaTeX, reports its state bytes and memory traffic,
leaves parameters alone at lr=0 where its update is proportional to lr, steps on every CPU
backend (the Triton interpreter runs every entry in tests/kernels/test_triton.py), and
continues identically after a state_dict round trip. A new catalogue entry is covered
without writing a line here; an exception needs a reason in the tables below."""
from __future__ import annotations

import copy
import re

import pytest
import torch

import optforge
from optforge.runtime.compiled import compile_rule

NAMES = sorted(optforge.CATALOGUE)

# Rules whose update is not lr times something: lr=0 does not mean "no step".
NOT_LR_PROPORTIONAL = {
    "ProxSGDBox": "the proximal step clamps p into the box even when lr = 0",
    "ProxSGDNonNeg": "the proximal step clamps p to p >= 0 even when lr = 0",
    "FTRL": "p = -(z - ...) / ((beta + sqrt(n)) / lr + l2): lr = 0 is outside its domain",
    "FTRLLpBall": "p is the lr-scaled dual point projected onto the ball: lr = 0 gives 0",
    "FTRLLinfBall": "p is the lr-scaled dual point projected onto the ball: lr = 0 gives 0",
    "ExponentiatedGradient": "p is renormalised onto the simplex every step",
    "OASIS": "lr is the first step size of its automatic step size: lr = 0 is refused",
    "Rprop": "lr only seeds the per-element step sizes, clamped to step_sizes[0] > 0",
    "AdaBound": "final_lr is scaled by lr / initial lr (as the references): a group that "
                "starts at lr = 0 divides by zero, refused (the references raise too)",
    "AdafactorOriginal": "its default relative_step computes the step size; a manual lr "
                         "with it is refused, as HF transformers refuses it",
}


def _plan(cls):
    spec = cls.rule
    return compile_rule(spec, spec.variant_of(spec.defaults)).plan


def _shapes(cls):
    # matrix rules need 2-D (and conv-shaped) weights; the rest also get awkward 1-D ones
    return [(7, 13), (6, 2, 2, 2)] if _plan(cls).matrix_stages else [(7, 13), (33,), (1,)]


def _inputs(cls, params, gen):
    """Random tensors for the rule's given(...) inputs and layer statistics, or None."""
    given = {}
    for name, decl in _plan(cls).states.items():
        if decl.kind != "input":
            continue
        given[name] = {}
        for p in params:
            if decl.shape:  # (batch, rows | cols) of the 2-D view
                width = p.shape[0] if decl.shape[1] == "rows" else p.numel() // p.shape[0]
                given[name][p] = torch.randn(8, width, generator=gen)
            else:
                given[name][p] = torch.randn(p.shape, generator=gen)
    return given or None


# Rules that step sparse gradients only (torch.optim.SparseAdam refuses dense ones): their
# gradients hold a random ~half of the elements, as a sparse COO tensor.
SPARSE_GRADIENTS = {"SparseAdam"}

# Rules defined on a domain start inside it.
ON_THE_SIMPLEX = {"ExponentiatedGradient"}  # p >= 0, summing to 1: 0/0 elsewhere


def _start(name, shape, gen):
    x = torch.randn(shape, generator=gen)
    return x.exp() / x.exp().sum() if name in ON_THE_SIMPLEX else x


def _run(name, backend, steps, params=None, opt=None, seed=0, **hyper):
    """``steps`` steps of ``name`` from seeded gradients; returns (params, optimizer)."""
    cls = optforge.CATALOGUE[name]
    gen = torch.Generator().manual_seed(seed)
    if params is None:
        params = [torch.nn.Parameter(_start(name, s, gen)) for s in _shapes(cls)]
    opt = opt or cls(params, backend=backend, **hyper)
    extra = {"loss": 1.0} if name == "MKORH" else {}  # its switching test reads the loss
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) + 0.5 * p.detach()
            if name in SPARSE_GRADIENTS:
                p.grad = (p.grad * (torch.rand(p.shape, generator=gen) < 0.5)).to_sparse()
        opt.step(inputs=_inputs(cls, params, gen), **extra)
    return params, opt


@pytest.mark.parametrize("name", NAMES)
def test_documents_itself(name):
    cls = optforge.CATALOGUE[name]
    assert cls.source.strip(), f"{name} cites no source"
    assert cls.__doc__ and cls.__doc__.strip(), f"{name} has no docstring"
    latex = cls.latex()  # rows top to bottom; primed names where an old value is still read
    assert latex.startswith("\\begin{aligned}")
    assert re.search(r"^p'? &(\\leftarrow|=) ", latex, re.M), latex
    assert cls.state_bytes_per_param() >= 0
    traffic = cls.traffic()
    assert traffic.total >= 8  # reads p and g at the very least (4 B each in float32)


@pytest.mark.parametrize("name", [n for n in NAMES if "lr" in optforge.CATALOGUE[n].rule.defaults
                                  and n not in NOT_LR_PROPORTIONAL])
def test_lr_zero_is_the_identity(name):
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen))
              for s in _shapes(optforge.CATALOGUE[name])]
    before = [p.detach().clone() for p in params]
    _run(name, "torch", 3, params=params, lr=0.0)
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b), f"{name} moved parameters at lr=0"


def test_the_exceptions_really_are_exceptions():
    """Each entry of NOT_LR_PROPORTIONAL does move at lr=0 (else it belongs above), or
    refuses lr=0 with a clear error."""
    with pytest.raises(ValueError, match="rule 'FTRL' at step 1: the scalar prologue failed"):
        _run("FTRL", "torch", 1, lr=0.0)
    with pytest.raises(ValueError, match="OASIS: lr = 0.0 in param group 0"):
        _run("OASIS", "torch", 1, lr=0.0)
    with pytest.raises(ValueError, match="rule 'AdaBound' at step 1: the scalar prologue failed "
                                         r"\(float division by zero\).*initial_lr=0"):
        _run("AdaBound", "torch", 1, lr=0.0)
    with pytest.raises(ValueError, match="Cannot combine manual `lr` and `relative_step"):
        _run("AdafactorOriginal", "torch", 1, lr=0.0)
    for name in set(NOT_LR_PROPORTIONAL) - {"FTRL", "OASIS", "AdaBound", "AdafactorOriginal"}:
        gen = torch.Generator().manual_seed(1)
        params = [torch.nn.Parameter(3 * torch.randn(s, generator=gen))
                  for s in _shapes(optforge.CATALOGUE[name])]
        before = [p.detach().clone() for p in params]
        _run(name, "torch", 3, params=params, lr=0.0)
        assert any(not torch.equal(p.detach(), b) for p, b in zip(params, before)), name


@pytest.mark.parametrize("name", NAMES)
def test_steps_and_round_trips_its_state_dict(name, backend):
    """Three steps, a state_dict saved and loaded into a fresh optimizer over copies of
    the parameters, then two more steps on both: the same bits."""
    params, opt = _run(name, backend, 3)
    assert all(torch.isfinite(p).all() for p in params)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    saved = copy.deepcopy(opt.state_dict())  # a checkpoint: torch's shares the tensors
    fresh = optforge.CATALOGUE[name](copies, backend=backend)
    fresh.load_state_dict(saved)
    _run(name, backend, 2, params=params, opt=opt, seed=7)
    _run(name, backend, 2, params=copies, opt=fresh, seed=7)
    for a, b in zip(params, copies):
        assert torch.equal(a.detach(), b.detach()), f"{name} on {backend}"
