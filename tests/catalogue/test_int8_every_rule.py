"""Every catalogue rule with ``state_dtype="int8"`` (every state 8-bit, blocks of 256,
quantized whatever the tensor's size): the numba kernel (and the Triton interpreter's,
for representatives: it is slow) stores the same codes and scales as the torch
reference given the same inputs, step after step; rules with reduce, matrix
or pre-stages are refused with a clear error (their states are read in several passes).

The torch backend's parameters may differ from numba's in the last bit (both backends'
float32 parameter updates are tested elsewhere), so before each step the torch optimizer
gets numba's parameters and states: each step is compared from the same inputs. Every
single-pass rule stores the same bytes (codes, scales, padding) on every step, except
where the float32 math itself differs (FP32_MATH_DIFFERS, shown with float32 states)."""
import copy

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

from optforge.catalogue import REGISTRY
from optforge.compiler.errors import CompileError
from optforge.compiler.quant_format import parse
from optforge.runtime.backends import BackendError
from tests.runtime.test_copies import MATRIX, OVERRIDES, _model, _step

LAYER_STATS = {"KFAC", "EKFAC", "NaturalGradient", "MKOR", "MKORH", "AdaFisher", "AdaFisherW"}
OPTIONS = dict(state_dtype="int8", quant_min_numel=0, seed=11)


TRITON_REPRESENTATIVES = ["AdamW", "Lion", "Adagrad", "RMSprop", "Adadelta"]


def _build(name: str, backend: str, **options):
    model = _model().to(DEVICE if backend == "triton" else "cpu")
    params = [p for p in model.parameters() if p.dim() >= 2] if name in MATRIX \
        else model.parameters()
    opt = REGISTRY[name](params, backend=backend, **OVERRIDES.get(name, {}),
                         **{**OPTIONS, **options})
    if name in LAYER_STATS:
        opt.attach(model)
    return model, opt


def _plan(name: str):
    """The rule's plan with the states it declares (no 8-bit option)."""
    model, opt = _build(name, "torch", state_dtype=None)
    return opt._compiled(opt.param_groups[0]).plan


def _quantized(opt) -> list[str]:
    decls = opt._compiled(opt.param_groups[0]).plan.states
    return sorted(n for n, d in decls.items() if parse(d.dtype))


def _stored(opt) -> list[tuple[str, torch.Tensor]]:
    """Every per-element state of every parameter (packed bytes when 8-bit)."""
    decls = opt._compiled(opt.param_groups[0]).plan.states
    return [(n, state[n]) for state in opt.state.values() for n in sorted(decls)
            if n in state and decls[n].kind == "state"]


# rules whose float32 state math differs in the last bit between numba and torch (shown
# below with float32 states; bfloat16 storage hides it): an 8-bit block's scale, the
# absmax of its new values, then differs too. AdaMod: its per-element step size
# lr * sqrt(1 - beta2^t) / (1 - beta1^t) / (sqrt(v) + eps), exp_avg_lr, at the first step
FP32_MATH_DIFFERS = {"AdaMod"}


def _first_difference(name: str, backend: str = "numba", **options):
    """(state, step) of the first state ``backend`` and torch store differently when each
    step starts from the same parameters and states, or None."""
    ours_model, ours = _build(name, backend, **options)
    ref_model, ref = _build(name, "torch", **options)
    ref_model.to(DEVICE if backend == "triton" else "cpu")
    for k in range(3):
        _step(ours_model, ours, name, k)
        _step(ref_model, ref, name, k)
        packed, theirs = _stored(ours), _stored(ref)
        assert [n for n, _ in packed] == [n for n, _ in theirs]
        for (n, a), (_, b) in zip(packed, theirs):
            assert a.dtype == b.dtype
            if not torch.equal(a, b):
                return n, k
        with torch.no_grad():  # the next step from the same inputs
            for p, q in zip(ours_model.parameters(), ref_model.parameters()):
                q.copy_(p)
        # a copy: a loaded ``step`` tensor would be shared, and ours' next step (which
        # writes its count in place) would advance ref's count too
        ref.load_state_dict(copy.deepcopy(ours.state_dict()))
    return None


@pytest.mark.parametrize("name", TRITON_REPRESENTATIVES)
def test_triton_stores_the_same_int8_states(name):
    assert _first_difference(name, "triton") is None


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_numba_and_torch_store_the_same_int8_states(name):
    plan = _plan(name)
    if not plan.states_of("state"):  # no per-element state: nothing to store in 8 bits
        model, opt = _build(name, "numba")
        _step(model, opt, name, 0)
        assert not any(t.dtype == torch.uint8 for s in opt.state.values() for t in s.values()
                       if isinstance(t, torch.Tensor))
        return
    if plan.reduce_stages or plan.matrix_stages or plan.pre_plan or plan.states_of("input") \
            or name == "SparseAdam":
        model, opt = _build(name, "numba")
        with pytest.raises((CompileError, BackendError, ValueError),
                           match="8-bit states .* one elementwise pass|'int8' is not supp"):
            for k in range(2):  # (SPIDER and STORM compile their rule at the second step)
                _step(model, opt, name, k)
        return
    if name in FP32_MATH_DIFFERS:
        assert _first_difference(name, state_dtype="float32") is not None
        return
    assert _first_difference(name) is None
