"""load_state_dict is all or nothing: a bad checkpoint raises an error naming the group,
parameter and key, and the optimizer is exactly as before (the same param_groups and
state objects, the same values, and its next step is the one it would have taken)."""
import copy

import pytest
import torch

import optforge


def _setup(seed=0):
    """A routed optimizer (Muon group, AdamW group) after two steps."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(6, 4), (5,), (3,)]]
    opt = optforge.Muon([{"params": params[:1]},
                         {"params": params[1:], "rule": optforge.AdamW, "lr": 1e-2}], lr=0.02)
    _steps(opt, params, 2, seed)
    return opt, params


def _steps(opt, params, n, seed):
    for k in range(n):
        gen = torch.Generator().manual_seed(1000 * seed + k)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def _checkpoint():
    """A valid checkpoint of another run (different values everywhere)."""
    opt, _ = _setup(seed=1)
    return copy.deepcopy(opt.state_dict())


def _assert_unchanged(opt, params, before):
    groups, group_dicts, group_copies, state, state_dicts, state_copies = before
    assert opt.param_groups is groups and opt.state is state
    for group, same, saved in zip(opt.param_groups, group_dicts, group_copies):
        assert group is same and group.keys() == saved.keys()
        assert all(group[k] == saved[k] for k in saved)
    for p in params:
        assert opt.state[p] is state_dicts[p] and opt.state[p].keys() == state_copies[p].keys()
        for key, value in opt.state[p].items():
            assert torch.equal(value, state_copies[p][key]), key
    twin, twin_params = _setup()  # the same run, never offered a checkpoint
    _steps(opt, params, 1, seed=5)
    _steps(twin, twin_params, 1, seed=5)
    for a, b in zip(params, twin_params):
        assert torch.equal(a, b)


def _snapshot(opt, params):
    return (opt.param_groups, list(opt.param_groups),
            [{k: v for k, v in g.items()} for g in opt.param_groups],
            opt.state, {p: opt.state[p] for p in params},
            {p: {k: v.clone() for k, v in opt.state[p].items()} for p in params})


def _edit_state(key, name, value):
    def edit(sd):
        if value is _DELETE:
            del sd["state"][key][name]
        else:
            sd["state"][key][name] = value(sd["state"][key][name])
    return edit


_DELETE = object()
BAD = {
    # (how the checkpoint is damaged, what the error says)
    "missing exp_avg_sq": (_edit_state(2, "exp_avg_sq", _DELETE),
                           r"parameter 1 of group 1: state 'exp_avg_sq' is missing"),
    "missing Adam step": (_edit_state(1, "step", _DELETE),
                          r"parameter 0 of group 1: state 'step' is missing"),
    "wrong shape": (_edit_state(2, "exp_avg", lambda v: torch.zeros(4)),
                    r"parameter 1 of group 1: state 'exp_avg' has shape .*\(3,\) is expected"),
    "wrong matrix shape": (_edit_state(0, "momentum_buffer", lambda v: v.T.contiguous()),
                           r"parameter 0 of group 0: state 'momentum_buffer' has shape"),
    "NaN step": (_edit_state(1, "step", lambda v: torch.tensor(float("nan"))),
                 r"parameter 0 of group 1: state 'step' = tensor\(nan\)"),
    "negative step": (_edit_state(2, "step", lambda v: -v),
                      r"parameter 1 of group 1: state 'step' = tensor\(-2\.\)"),
    "integer state": (_edit_state(1, "exp_avg", lambda v: v.long()),
                      r"parameter 0 of group 1: state 'exp_avg' has dtype torch.int64"),
    "complex state": (_edit_state(1, "exp_avg", lambda v: v.to(torch.complex64)),
                      r"parameter 0 of group 1: state 'exp_avg' has dtype torch.complex64"),
    "list state": (_edit_state(1, "exp_avg_sq", lambda v: v.tolist()),
                   r"parameter 0 of group 1: state 'exp_avg_sq' is a list, not a tensor"),
    "NaN lr": (lambda sd: sd["param_groups"][1].update(lr=float("nan")),
               r"hyperparameter 'lr' = nan in loaded param group 1"),
    "bad betas": (lambda sd: sd["param_groups"][1].update(betas=(0.9,)),
                  r"hyperparameter 'betas' = \(0\.9,\) in loaded param group 1"),
    "unknown rule": (lambda sd: sd["param_groups"][1].update(rule="NoSuchRule"),
                     r"loaded param group 1: .*rule 'NoSuchRule' is not in the catalogue"),
    "bad torch adjust_lr_fn": (lambda sd: (sd["param_groups"][0].pop("match_rms_adamw"),
                                           sd["param_groups"][0].update(adjust_lr_fn="x")),
                               r"loaded param group 0: adjust_lr_fn='x'; Muon knows None"),
    "group count": (lambda sd: sd["param_groups"].pop(),
                    r"different number of parameter groups: 1 saved, 2 in this Muon"),
    "group size": (lambda sd: sd["param_groups"][1]["params"].pop(),
                   r"group 1 has 1 parameters saved, 2 in this Muon"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_checkpoint_changes_nothing(case):
    damage, message = BAD[case]
    opt, params = _setup()
    before = _snapshot(opt, params)
    checkpoint = _checkpoint()
    damage(checkpoint)
    calls = []
    opt.register_load_state_dict_post_hook(lambda o: calls.append(o))
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(checkpoint)
    assert calls == []  # no post-hook for a load that did not happen
    _assert_unchanged(opt, params, before)


def test_a_good_checkpoint_loads_and_runs_the_hooks_in_order():
    opt, params = _setup()
    checkpoint = _checkpoint()
    # a pre-hook may repair a checkpoint: the check sees the dict it returns
    broken = copy.deepcopy(checkpoint)
    broken["state"][2]["old_name"] = broken["state"][2].pop("exp_avg_sq")
    calls = []

    def rename(o, sd):
        calls.append("pre")
        sd["state"][2]["exp_avg_sq"] = sd["state"][2].pop("old_name")

    opt.register_load_state_dict_pre_hook(rename)
    opt.register_load_state_dict_post_hook(lambda o: calls.append(("post", o.state[params[2]]
                                                                   ["step"].dtype)))
    opt.load_state_dict(broken)
    assert calls == ["pre", ("post", torch.float32)]
    for i, p in enumerate(params):
        assert opt.state[p].keys() == checkpoint["state"][i].keys()
        for key, value in opt.state[p].items():
            assert torch.equal(value, checkpoint["state"][i][key])


def test_a_checkpoint_without_group_rules_keeps_the_groups_rules():
    """torch.optim checkpoints name no rule: each group keeps the one it runs."""
    opt, params = _setup()
    checkpoint = _checkpoint()
    del checkpoint["param_groups"][1]["rule"]
    opt.load_state_dict(checkpoint)
    assert opt.param_groups[1]["rule"] is optforge.AdamW
    assert opt.param_groups[1]["lr"] == 1e-2 and "betas" in opt.param_groups[1]
