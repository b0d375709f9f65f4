"""Copies of optimizers: deepcopy and pickle keep optforge's attributes and step on.

For every catalogue entry on every backend: a copy taken after two steps, then five more
steps of both, gives the same parameters and states bit for bit (triton under the
interpreter on CPU machines).
"""
import copy
import pickle

import pytest
import torch

from tests.triton_env import DEVICE, INTERPRETED  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.catalogue import REGISTRY
from optforge.runtime.backends import BACKENDS
from tests.conftest import available_backends

MATRIX = {"Muon", "Shampoo", "SOAP", "ScaledGD", "KFAC", "EKFAC", "NaturalGradient", "MKOR",
          "MKORH", "AdaFisher", "AdaFisherW"}
# a 5 x 6 weight makes p^T p singular: ScaledGD needs real damping to stay finite here
OVERRIDES = {"ScaledGD": {"damping": 1.0}}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)


def _build(name: str, backend: str):
    model = _model().to(DEVICE if backend == "triton" else "cpu")
    cls = REGISTRY[name]
    params = [p for p in model.parameters() if p.dim() >= 2] if name in MATRIX \
        else model.parameters()
    opt = cls(params, backend=backend, **OVERRIDES.get(name, {}))
    if hasattr(opt, "attach") and name in {"KFAC", "EKFAC", "NaturalGradient", "MKOR", "MKORH",
                                           "AdaFisher", "AdaFisherW"}:
        opt.attach(model)
    return model, opt


def _step(model, opt, name: str, k: int) -> None:
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in _data())
    x = x + 0.01 * k  # a different batch every step

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward(create_graph=name in {"AdaHessian", "OASIS"})
        if name == "SparseAdam":  # it steps sparse gradients only
            for p in model.parameters():
                p.grad = p.grad.to_sparse()
        return loss

    closure()
    inputs = None
    if name == "DOT":  # the distillation gradient DOT reads: a fixed stand-in
        inputs = {"distill_grad": {p: 0.5 * p.grad for p in model.parameters()}}
    if name in {"DistributedLion", "SignumMV"}:  # one worker's vote: no process group
        inputs = {"vote": {p: torch.sign(p.grad) for p in model.parameters()}}
    opt.step(closure, inputs=inputs)


def _snapshot(model, opt) -> list[torch.Tensor]:
    out = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        out += [v.clone() for v in opt.state[p].values() if isinstance(v, torch.Tensor)]
    return out


def _copy(kind: str, model, opt):
    if kind == "deepcopy":
        model2, opt2 = copy.deepcopy((model, opt))
    else:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    if getattr(opt, "layer_stats", None) is not None:
        assert opt2.layer_stats is None  # hooks belong to the original model
        opt2.attach(model2)
    return model2, opt2


def _backends(name: str) -> list[str]:
    found = [b for b in available_backends() if b != "triton"]
    if "triton" in BACKENDS and not INTERPRETED or name in {"SGD", "Adam", "LAMB"}:
        found.append("triton")  # (interpreted: three representatives, see the slow test)
    return found


CASES = [(n, b) for n in sorted(REGISTRY) for b in _backends(n)]


@pytest.mark.parametrize("name,backend", CASES)
def test_copy_then_five_steps_is_bit_identical(name, backend):
    model, opt = _build(name, backend)
    for k in range(2):
        _step(model, opt, name, k)
    runs = [(model, opt)] + [_copy(kind, model, opt) for kind in ("deepcopy", "pickle")]
    for _, copied in runs[1:]:
        assert (copied.spec.fn, copied.backend, copied.seed, copied.skip_nonfinite) == (
            opt.spec.fn, opt.backend, opt.seed, opt.skip_nonfinite)
    for k in range(2, 7):
        for m, o in runs:
            _step(m, o, name, k)
    original = _snapshot(model, opt)
    for m, o in runs[1:]:
        for a, b in zip(original, _snapshot(m, o), strict=True):
            assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_copy_on_interpreted_triton(name):
    if not INTERPRETED:
        pytest.skip("on a GPU every entry runs on triton in the test above")
    test_copy_then_five_steps_is_bit_identical(name, "triton")


def test_a_rule_function_optimizer_copies():
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = optforge.Optimizer([p], optforge.catalogue.lion, lr=0.1, seed=3)
    p.grad = torch.randn(4, 3)
    opt.step()
    opt2 = pickle.loads(pickle.dumps(opt))
    assert opt2.spec.fn is opt.spec.fn and opt2.seed == 3
    p2 = opt2.param_groups[0]["params"][0]
    p2.grad = p.grad.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, p2)


def test_copies_leave_out_caches_and_locks():
    import threading
    p = torch.nn.Parameter(torch.randn(3))
    p.grad = torch.ones(3)
    opt = optforge.SGD([p], lr=0.1)
    opt.step()
    opt._some_lock = threading.Lock()  # another component's lazily made lock
    state = opt.__getstate__()
    assert "_launcher_cache" not in state and "_some_lock" not in state
    assert {"spec", "backend", "seed", "skip_nonfinite", "defaults", "state"} <= set(state)
    copy.deepcopy(opt).step()


def test_a_copy_of_muon_grows_no_flag_torch_muon_lacks():
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = copy.deepcopy(optforge.Muon([w]))
    assert "differentiable" not in opt.defaults
    assert set(opt.param_groups[0]) == set(torch.optim.Muon([w]).param_groups[0]) | {
        "match_rms_adamw"}
