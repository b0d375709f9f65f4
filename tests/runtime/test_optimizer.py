"""optforge.Optimizer behaves as a torch.optim.Optimizer: groups, closures, errors, no recompiles."""
import pytest
import torch

import optforge
from optforge.dsl import Rule, grad, param, state
from optforge.runtime.compiled import STATS
from tests.conftest import norm_rel


def plain_sgd(lr=0.1):
    return Rule(param() - lr * grad())


def ema_rule(lr=0.1, decay=0.5):
    p, g = param(), grad()
    m = state("avg", init=param(), dtype="bfloat16")
    m1 = decay * m + (1 - decay) * p
    return Rule(p - lr * g, avg=m1)


def test_per_group_hyperparameters(backend):
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(3))
    opt = optforge.Optimizer([{"params": [a]}, {"params": [b], "lr": 1.0}], plain_sgd,
                             backend=backend)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.step()
    assert torch.allclose(a.detach(), torch.full((3,), -0.1))
    assert torch.allclose(b.detach(), torch.full((3,), -1.0))


def test_add_param_group_and_zero_grad(backend):
    a = torch.nn.Parameter(torch.zeros(2))
    opt = optforge.AdamW([a], lr=0.1, backend=backend)
    b = torch.nn.Parameter(torch.zeros(2))
    opt.add_param_group({"params": [b], "weight_decay": 0.0})
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    assert len(opt.state) == 2
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    with pytest.warns(UserWarning, match="weight_decy"):  # torch accepts any group key
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "weight_decy": 1})


def test_params_without_grad_are_skipped(backend):
    a = torch.nn.Parameter(torch.ones(2))
    frozen = torch.nn.Parameter(torch.ones(2))
    opt = optforge.Adam([a, frozen], backend=backend)
    a.grad = torch.ones(2)
    opt.step()
    assert frozen not in opt.state and torch.equal(frozen.detach(), torch.ones(2))
    assert float(opt.state[a]["step"]) == 1


def test_closure_is_called_with_grad_enabled(backend):
    w = torch.nn.Parameter(torch.tensor([3.0]))
    opt = optforge.SGD([w], lr=0.25, backend=backend)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0 and w.item() == pytest.approx(3.0 - 0.25 * 6.0)


def test_sparse_gradient_is_rejected(backend):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = optforge.Adam(emb.parameters(), backend=backend)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradient"):
        opt.step()
    assert not opt.state[emb.weight]  # nothing half-initialized


def test_changing_hyperparameters_never_recompiles(backend):
    p = torch.nn.Parameter(torch.randn(50))
    opt = optforge.AdamW([p], backend=backend)
    p.grad = torch.randn(50)
    opt.step()  # first use compiles (unless another test already did)
    before = dict(STATS)
    for i in range(5):
        opt.param_groups[0]["lr"] = 1e-3 * (i + 1)
        opt.param_groups[0]["betas"] = (0.8 + 0.01 * i, 0.99)
        opt.param_groups[0]["weight_decay"] = 0.01 * i
        opt.step()
    assert dict(STATS) == before


def test_structural_flag_selects_a_variant(backend):
    p = torch.nn.Parameter(torch.randn(20))
    opt = optforge.Adam([p], backend=backend)
    p.grad = torch.randn(20)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True  # turned on mid-run: the new state is created
    opt.step()
    assert "max_exp_avg_sq" in opt.state[p]


def test_state_keeps_its_declared_dtype_and_init(backend):
    p = torch.nn.Parameter(torch.randn(1000))
    opt = optforge.Optimizer([p], ema_rule, backend=backend)
    start = p.detach().clone()
    p.grad = torch.zeros(1000)
    opt.step()
    avg = opt.state[p]["avg"]
    assert avg.dtype == torch.bfloat16
    # initialized to p, then averaged with an unchanged p: still p, rounded to bf16
    assert torch.equal(avg, start.to(torch.bfloat16))
    sd = opt.state_dict()
    opt2 = optforge.Optimizer([p], ema_rule, backend=backend)
    opt2.load_state_dict(sd)  # torch casts states to the param dtype; optforge restores bf16
    assert opt2.state[p]["avg"].dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params(dtype, backend):
    """Math in float32, stored back in the param dtype (states too: they follow the param).

    The reference runs torch.optim.Adam in float32 and rounds the parameter to
    ``dtype`` after each step; its states stay float32 while ours are stored in
    ``dtype``, so the two may differ by about one storage ulp.
    """
    torch.manual_seed(0)
    init = torch.randn(257)
    p = torch.nn.Parameter(init.to(dtype))
    opt = optforge.Adam([p], lr=1e-2, backend=backend)
    ref_p = torch.nn.Parameter(init.to(dtype).float())
    ref = torch.optim.Adam([ref_p], lr=1e-2, foreach=False)
    for _ in range(5):
        g = torch.randn(257)
        p.grad, ref_p.grad = g.to(dtype), g.to(dtype).float()
        opt.step()
        ref.step()
        ref_p.data = ref_p.data.to(dtype).float()  # the reference also stores in dtype
    assert p.dtype == dtype and opt.state[p]["exp_avg"].dtype == dtype
    tol = {torch.bfloat16: 2 ** -8, torch.float16: 2 ** -11}[dtype]  # one ulp at 1.0
    assert norm_rel(p.detach().float(), ref_p.detach()) < tol


def test_float64_params_compute_in_float64(backend):
    from optforge.runtime.backends import BACKENDS
    if not BACKENDS[backend].supports(torch.device("cpu"), torch.float64):
        pytest.skip(f"backend {backend!r} does not run float64 tensors")
    torch.manual_seed(0)
    init = torch.randn(257, dtype=torch.float64)
    p, q = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    opt = optforge.Adam([p], lr=1e-2, backend=backend)
    ref = torch.optim.Adam([q], lr=1e-2, foreach=False)
    for _ in range(5):
        g = torch.randn(257, dtype=torch.float64)
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert norm_rel(p.detach(), q.detach()) < 1e-14


def test_positional_lr_and_unknown_hyperparameters():
    p = torch.nn.Parameter(torch.zeros(1))
    assert optforge.AdamW([p], 0.5).param_groups[0]["lr"] == 0.5
    with pytest.raises(TypeError, match="momentun"):
        optforge.SGD([p], lr=0.1, momentun=0.9)
    with pytest.raises(ValueError, match="betas"):
        optforge.Adam([p], betas=(0.9,))
    with pytest.raises(ValueError, match="lr"):
        optforge.Adam([p], lr="fast")
    with pytest.raises(ValueError, match="amsgrad"):
        optforge.Adam([p], amsgrad="yes")


def test_unknown_backend_is_rejected():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(optforge.BackendError, match="cuda-magic"):
        optforge.AdamW([p], backend="cuda-magic")


def test_prologue_failure_names_the_hyperparameters():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = optforge.Adam([p])
    # the constructor refuses beta_1 = 1 as torch does; a group edited later reaches the
    # step, whose prologue catches the bias correction 1 - 1^t = 0
    opt.param_groups[0]["betas"] = (1.0, 0.999)
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="beta_1=1"):
        opt.step()
    assert not opt.state.get(p)  # the failed step created no state (it fails in check)
    assert torch.equal(p.detach(), torch.zeros(3))


def test_trains_a_model_like_torch(backend):
    """End to end: a small regression trained with optforge.AdamW tracks torch.optim.AdamW."""
    def train(make_opt):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        opt = make_opt(model.parameters())
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 8, generator=gen)
        y = x.sum(1, keepdim=True)
        for _ in range(30):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    ours = train(lambda ps: optforge.AdamW(ps, lr=1e-2, backend=backend))
    ref = train(lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False))
    assert ours == pytest.approx(ref, rel=1e-4)
