"""Storage options for any rule: state dtypes chosen by the user (over the rule author's),
recorded in param groups, validated by name, compiled once per choice, and carried by
checkpoints; values checked against AdamW with bfloat16 states written in plain torch."""
import warnings

import pytest
import torch

import optforge
from optforge import Optimizer
from optforge.dsl import Rule, grad, param, state
from optforge.runtime import compiled


def _adamw_bf16_states_reference(p, grads, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=1e-2):
    """torch.optim.AdamW's math in float32, its states stored as bfloat16 (nearest)."""
    b1, b2 = betas
    m = torch.zeros_like(p, dtype=torch.bfloat16)
    v = torch.zeros_like(p, dtype=torch.bfloat16)
    p = p.clone()
    for t, g in enumerate(grads, 1):
        m32 = b1 * m.float() + (1 - b1) * g
        v32 = b2 * v.float() + (1 - b2) * g * g
        p = p * (1 - lr * weight_decay)
        denom = (v32 / (1 - b2**t)).sqrt() + eps
        p = p - lr / (1 - b1**t) * m32 / denom
        m, v = m32.bfloat16(), v32.bfloat16()
    return p, m, v


def _grads(shape, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for _ in range(n)]


def test_bf16_states_match_a_plain_torch_reference(backend):
    p0 = torch.randn(300, 7, generator=torch.Generator().manual_seed(1))
    grads = _grads(p0.shape, 6)
    p = p0.clone()
    opt = optforge.AdamW([p], lr=1e-2, backend=backend, state_dtype="bfloat16")
    for g in grads:
        p.grad = g.clone()
        opt.step()
    ref_p, ref_m, ref_v = _adamw_bf16_states_reference(p0, grads)
    state = opt.state[p]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
    torch.testing.assert_close(p, ref_p, rtol=1e-5, atol=1e-6)
    # one bfloat16 step at most, where float32 math rounded one ulp apart before storing
    torch.testing.assert_close(state["exp_avg"], ref_m, rtol=2**-7, atol=1e-30)
    torch.testing.assert_close(state["exp_avg_sq"], ref_v, rtol=2**-7, atol=1e-30)
    assert opt.param_groups[0]["state_dtype"] == "bfloat16"


def test_per_state_dtypes_and_groups_of_their_own(backend):
    a, b = torch.randn(64), torch.randn(64)
    opt = optforge.AdamW([{"params": [a]},
                          {"params": [b], "state_dtype": "float16", "state_dtypes": None}],
                         backend=backend, state_dtypes={"exp_avg": "bfloat16"})
    a.grad, b.grad = torch.randn(64), torch.randn(64)
    opt.step()
    assert opt.state[a]["exp_avg"].dtype == torch.bfloat16
    assert opt.state[a]["exp_avg_sq"].dtype == torch.float32
    assert opt.state[b]["exp_avg"].dtype == opt.state[b]["exp_avg_sq"].dtype == torch.float16
    assert opt.param_groups[0]["state_dtypes"] == {"exp_avg": "bfloat16"}


def _half_momentum(lr=0.1, beta=0.9):
    p, g = param(), grad()
    m = state("m", dtype="bfloat16")  # the author's choice
    m1 = beta * m + g
    return Rule(p - lr * m1, m=m1)


@pytest.mark.parametrize("options,expected", [
    ({}, torch.bfloat16),
    ({"state_dtype": "float32"}, torch.float32),
    ({"state_dtype": "float16", "state_dtypes": {"m": "float32"}}, torch.float32),
])
def test_the_users_dtype_wins_over_the_authors(options, expected):
    p = torch.randn(10)
    opt = Optimizer([p], _half_momentum, backend="torch", **options)
    p.grad = torch.randn(10)
    opt.step()
    assert opt.state[p]["m"].dtype == expected


@pytest.mark.parametrize("options,named", [
    ({"state_dtypes": {"momentum": "bfloat16"}}, ["'momentum'", "exp_avg", "exp_avg_sq"]),
    ({"state_dtype": "int4"}, ["'int4'", "bfloat16"]),
    ({"state_dtypes": {"exp_avg": "float8"}}, ["state_dtypes['exp_avg']", "'float8'"]),
    ({"rounding": "up"}, ["rounding='up'", "stochastic"]),
    ({"param_rounding": "compensated"}, ["param_rounding='compensated'", "kahan"]),
    ({"state_dtypes": ["exp_avg"]}, ["state_dtypes=", "dict"]),
])
def test_bad_options_are_refused_by_name(options, named):
    with pytest.raises(ValueError) as info:
        optforge.AdamW([torch.randn(3)], **options)
    for text in named:
        assert text in str(info.value)


def test_a_refused_group_leaves_the_optimizer_as_it_was():
    opt = optforge.AdamW([torch.randn(3)], state_dtype="bfloat16")
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="'momentum_buffer'"):
        opt.add_param_group({"params": [torch.randn(4)],
                             "state_dtypes": {"momentum_buffer": "bfloat16"}})
    assert [dict(g) for g in opt.param_groups] == before


def test_each_choice_compiles_once():
    def run(**options):
        p = torch.randn(8)
        opt = Optimizer([p], _half_momentum, backend="torch", **options)
        p.grad = torch.randn(8)
        opt.step()
        return opt._compiled(opt.param_groups[0])
    first = run(state_dtype="float32")
    plans = compiled.STATS["plans"]
    assert run(state_dtype="float32") is first  # the same options: the same variant
    assert compiled.STATS["plans"] == plans
    other = run(state_dtype="float32", rounding="stochastic")
    assert other is not first and compiled.STATS["plans"] == plans + 1
    assert other.plan.fingerprint() != first.plan.fingerprint()


def test_bytes_per_param_report_the_options():
    assert optforge.AdamW.state_bytes_per_param() == 8
    assert optforge.AdamW.state_bytes_per_param(state_dtype="bfloat16") == 4
    assert optforge.AdamW.state_bytes_per_param(state_dtypes={"exp_avg": "bfloat16"}) == 6
    # bf16 parameters: states in their dtype, plus the Kahan compensation
    assert optforge.AdamW.state_bytes_per_param("bfloat16", param_rounding="kahan") == 6
    # fp32 AdamW moves 28 B/param; bf16 states 20 (p 4+4, g 4, m and v 2+2 each)
    assert optforge.AdamW.traffic().total == 28
    assert optforge.AdamW.traffic(state_dtype="bfloat16").total == 20


def _stepped(options, steps=2, seed=0):
    p = torch.randn(50, generator=torch.Generator().manual_seed(seed))
    opt = optforge.AdamW([p], backend="torch", **options)
    for g in _grads(p.shape, steps, seed):
        p.grad = g
        opt.step()
    return p, opt


def test_checkpoints_carry_the_options_and_load_exactly():
    p, opt = _stepped({"state_dtype": "bfloat16"})
    saved = opt.state_dict()
    assert saved["param_groups"][0]["state_dtype"] == "bfloat16"
    q = p.clone()
    other = optforge.AdamW([q], backend="torch", state_dtype="bfloat16")
    other.load_state_dict(saved)
    for name in ("exp_avg", "exp_avg_sq"):
        assert other.state[q][name].dtype == torch.bfloat16
        assert torch.equal(other.state[q][name], opt.state[p][name])


def test_an_fp32_checkpoint_loads_into_bf16_states_and_back():
    p, opt32 = _stepped({})
    q = p.clone()
    opt16 = optforge.AdamW([q], backend="torch", state_dtype="bfloat16")
    opt16.load_state_dict(opt32.state_dict())
    assert opt16.param_groups[0]["state_dtype"] == "bfloat16"  # this optimizer's choice
    for name in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt16.state[q][name], opt32.state[p][name].bfloat16())
    r = p.clone()
    back = optforge.AdamW([r], backend="torch", state_dtype="float32")
    back.load_state_dict(opt16.state_dict())
    assert back.state[r]["exp_avg"].dtype == torch.float32
    assert torch.equal(back.state[r]["exp_avg"], opt16.state[q]["exp_avg"].float())


def test_kahan_state_starts_at_zero_after_an_uncompensated_checkpoint():
    p, opt = _stepped({})
    q = p.clone().bfloat16()
    kahan = optforge.AdamW([q], backend="torch", param_rounding="kahan")
    plain = optforge.AdamW([p.clone().bfloat16()], backend="torch")
    state = opt.state_dict()
    kahan.load_state_dict(state)
    plain.load_state_dict(state)
    q.grad = torch.ones_like(q)
    kahan.step()
    assert kahan.state[q]["kahan_comp"].dtype == torch.bfloat16
    assert kahan.state[q]["kahan_comp"].abs().sum() > 0  # what bf16 p could not take
    assert kahan.state_dict()["param_groups"][0]["param_rounding"] == "kahan"


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_schedulers_see_the_options_untouched():
    p = torch.randn(3)
    opt = optforge.AdamW([p], lr=1.0, state_dtype="bfloat16")
    p.grad = torch.randn(3)
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["state_dtype"] == "bfloat16"


def test_storage_keys_warn_never_and_routed_groups_inherit_the_rule_agnostic_ones():
    """The storage options are read keys (no unread-key warning, runtime/group_keys.py);
    a group routed to another rule takes the constructor's state_dtype, rounding and
    param_rounding, not its state_dtypes (which names the constructor rule's states)."""
    a, b, c = torch.randn(16), torch.randn(16), torch.randn(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = optforge.SGD([{"params": [a]}, {"params": [b], "rule": "AdamW"}], lr=0.1,
                           momentum=0.9, backend="torch", state_dtype="bfloat16",
                           state_dtypes={"momentum_buffer": "float16"}, rounding="stochastic")
        opt.add_param_group({"params": [c], "rule": "AdamW", "state_dtype": "float16"})
        for p in (a, b, c):
            p.grad = torch.randn(16)
        opt.step()
    assert opt.state[a]["momentum_buffer"].dtype == torch.float16
    routed = opt.param_groups[1]
    assert routed["state_dtype"] == "bfloat16" and routed["rounding"] == "stochastic"
    assert "state_dtypes" not in routed
    assert opt.state[b]["exp_avg"].dtype == opt.state[b]["exp_avg_sq"].dtype == torch.bfloat16
    assert opt.state[c]["exp_avg"].dtype == torch.float16  # the group's own choice wins
    assert opt._compiled(routed).storage.rounding == "stochastic"
