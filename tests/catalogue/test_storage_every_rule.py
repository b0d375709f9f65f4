"""Every catalogue rule runs with bfloat16 states rounded stochastically, and the
backends store the same bits given the same seed (numba and torch for every entry; the
Triton interpreter for representatives: a reduce stage, a pre-stage, a matrix stage)."""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

from optforge.catalogue import REGISTRY
from tests.runtime.test_copies import MATRIX, OVERRIDES, _model, _step

LAYER_STATS = {"KFAC", "EKFAC", "NaturalGradient", "MKOR", "MKORH", "AdaFisher", "AdaFisherW"}
TRITON_REPRESENTATIVES = ["AdamW", "Lion", "LAMB", "Muon", "SOAP"]
OPTIONS = dict(state_dtype="bfloat16", rounding="stochastic", seed=11)


def _half_states(name: str, backend: str) -> list[torch.Tensor]:
    model = _model().to(DEVICE if backend == "triton" else "cpu")
    params = [p for p in model.parameters() if p.dim() >= 2] if name in MATRIX \
        else model.parameters()
    opt = REGISTRY[name](params, backend=backend, **OVERRIDES.get(name, {}), **OPTIONS)
    if name in LAYER_STATS:
        opt.attach(model)
    for k in range(3):
        _step(model, opt, name, k)
    declared = {n for n, d in opt._compiled(opt.param_groups[0]).plan.states.items()
                if d.kind == "state"}
    out = []
    for state in opt.state.values():
        for n in sorted(declared & set(state)):
            assert state[n].dtype == torch.bfloat16, (name, n)
            out.append(state[n].cpu().view(torch.int16))
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_numba_and_torch_store_the_same_bf16_states(name):
    ours, ref = _half_states(name, "numba"), _half_states(name, "torch")
    assert len(ours) == len(ref)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))


@pytest.mark.parametrize("name", TRITON_REPRESENTATIVES)
def test_triton_stores_the_same_bf16_states(name):
    ours, ref = _half_states(name, "triton"), _half_states(name, "torch")
    assert ours and len(ours) == len(ref)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))
