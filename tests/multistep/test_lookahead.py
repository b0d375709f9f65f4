"""Lookahead against a plain loop written from Zhang et al. (2019), Alg. 1: k base steps
on the fast weights, then phi <- phi + alpha (theta - phi), theta <- phi.

The reference writes phi + alpha (theta - phi) where ours uses torch.lerp (for alpha < 0.5
the same formula; above, lerp computes theta - (1 - alpha)(theta - phi)): ~1e-16 relative
per synchronisation, hence 1e-12 over 23 float64 steps of a fixed gradient sequence (the
gradients come from the parameters, so the difference is carried, not reset). With an
optforge base on another backend the base step is a float32 kernel: 1e-6.
"""
import copy

import pytest
import torch

import optforge
from optforge.catalogue.adamw import adamw
from optforge.multistep import Lookahead
from optforge.multistep.lookahead import Lookahead as LookaheadClass


def params_and_loss(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(30, 6, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(30, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64).to(dtype))
    c = torch.nn.Parameter(torch.zeros(2, 3, dtype=dtype))
    return [w, c], lambda: ((A @ w - b) ** 2).mean() + torch.cos(c).sum() + (c ** 2).sum()


def reference(make_base, k, alpha, steps, dtype=torch.float64):
    params, f = params_and_loss(dtype)
    base = make_base(params)
    slow = [p.detach().clone() for p in params]
    for t in range(1, steps + 1):
        base.zero_grad()
        f().backward()
        base.step()
        if t % k == 0:
            with torch.no_grad():
                for p, s in zip(params, slow):
                    s.copy_(s + alpha * (p - s))
                    p.copy_(s)
    return torch.cat([p.detach().reshape(-1) for p in params]).double()


def run(opt_of, steps, dtype=torch.float64, closure=False):
    params, f = params_and_loss(dtype)
    opt = opt_of(params)

    def step_closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss
    for _ in range(steps):
        if closure:
            opt.step(step_closure)
        else:
            step_closure()
            opt.step()
    return torch.cat([p.detach().reshape(-1) for p in params]).double(), opt, params, f


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("alpha", [0.3, 0.8])
@pytest.mark.parametrize("k", [1, 5])
def test_matches_the_algorithm_with_torch_adam(k, alpha):
    ref = reference(lambda ps: torch.optim.Adam(ps, lr=0.05), k, alpha, 23)
    ours, *_ = run(lambda ps: Lookahead(ps, torch.optim.Adam, k=k, alpha=alpha, lr=0.05), 23)
    with_closure, *_ = run(lambda ps: Lookahead(torch.optim.Adam(ps, lr=0.05), k=k,
                                                alpha=alpha), 23, closure=True)
    plain = reference(lambda ps: torch.optim.Adam(ps, lr=0.05), 1, 1.0, 23)  # alpha=1: no pull
    assert rel(ours, ref) <= 1e-12
    assert rel(with_closure, ref) <= 1e-12     # the closure path takes phi_0 before moving
    assert rel(ours, plain) > 1e-3


def test_optforge_base_on_every_backend(backend):
    ref = reference(lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.1), 3, 0.5, 20,
                    torch.float32)
    by_class, *_ = run(lambda ps: Lookahead(ps, optforge.AdamW, k=3, alpha=0.5, lr=0.05,
                                            weight_decay=0.1, backend=backend),
                       20, torch.float32)
    by_rule, *_ = run(lambda ps: Lookahead(ps, adamw, k=3, alpha=0.5, lr=0.05,
                                           weight_decay=0.1, backend=backend),
                      20, torch.float32)
    assert rel(by_class, ref) <= 1e-6 and torch.equal(by_class, by_rule)


def test_state_dict_round_trip_continues_identically():
    _, opt, params, f = run(lambda ps: Lookahead(ps, torch.optim.Adam, k=4, alpha=0.5,
                                                 lr=0.05), 6)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["lookahead"]["steps"] == 6 and sorted(saved["lookahead"]["slow"]) == [0, 1]
    params2, f2 = params_and_loss()
    with torch.no_grad():
        for a, b in zip(params2, params):
            a.copy_(b)
    opt2 = Lookahead(params2, torch.optim.Adam, k=2, alpha=0.9, lr=1.0)
    opt2.load_state_dict(saved)
    assert (opt2.k, opt2.alpha, opt2.steps, opt2.param_groups[0]["lr"]) == (4, 0.5, 6, 0.05)
    for o, ps, fn in ((opt, params, f), (opt2, params2, f2)):
        for _ in range(5):                      # crosses a synchronisation (step 8)
            o.zero_grad()
            fn().backward()
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(params, params2))
    assert torch.equal(opt.state[params[0]]["slow_param"], opt2.state[params2[0]]["slow_param"])


def test_failing_base_step_leaves_state_untouched_and_errors():
    params, _ = params_and_loss()
    opt = Lookahead(params, torch.optim.SGD, k=2, lr=0.1)

    def closure():
        raise FloatingPointError("boom")
    with pytest.raises(FloatingPointError):
        opt.step(closure)
    assert opt.steps == 0 and not any("slow_param" in opt.state.get(p, {}) for p in params)
    assert optforge.Lookahead is LookaheadClass
    for kw, what in [(dict(k=0), "k = 0"), (dict(alpha=1.5), "alpha = 1.5")]:
        with pytest.raises(ValueError, match=what):
            Lookahead(params, torch.optim.SGD, lr=0.1, **kw)
    with pytest.raises(TypeError, match="give k and alpha by keyword"):
        Lookahead(torch.optim.SGD(params, lr=0.1), 5)
    bad = opt.state_dict()
    bad["lookahead"]["slow"] = {0: torch.zeros(3)}
    with pytest.raises(ValueError, match="slow weight 0"):
        opt.load_state_dict(bad)


def test_deepcopy_and_pickle_keep_the_base_and_slow_weights():
    import pickle
    _, opt, _, _ = run(lambda ps: Lookahead(ps, torch.optim.Adam, k=4, lr=0.05), 3)
    torch.optim.lr_scheduler.StepLR(opt, 1)     # patches opt.step on the instance
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert isinstance(other.base, torch.optim.Adam) and other.steps == 3
        assert torch.equal(other.state_dict()["lookahead"]["slow"][0],
                           opt.state_dict()["lookahead"]["slow"][0])
