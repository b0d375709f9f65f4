"""AdafactorOriginal matches pytorch-optimizer's AdaFactor (4.x) over 20 steps on every
backend (numba, torch; triton under the interpreter on CPU machines), matrices factored,
vectors and scalars not, over its options: relative step (with and without warmup) or a
given lr, parameter scaling, update clipping, momentum off (``betas=(None, cap)``) and on,
the beta2 cap, decoupled / fixed / L2 weight decay, the AMS bound, cautious masking,
maximize, eps1/eps2. The second moments are compared too (theirs ``(rows,)`` /
``(cols,)``, ours ``(rows, 1)`` / ``(1, cols)``: compared flat).

Their options under our names (the module docstring's table): ``betas=(beta1, cap)`` is
``beta1`` and ``beta2_cap``; ``eps1, eps2`` is ``eps``; the group key ``cautious`` and
``momentum_dtype=torch.bfloat16`` are ``cautious`` and ``bf16_momentum``; their ``lr`` is
ignored under ``relative_step=True`` and ours must then be None (HF's refusal).
Not compared: parameters of more than 2 dimensions, which they factor per leading index
and optforge refuses (tested below); a float16 momentum (they then also change eps1).

Momentum: their default keeps it in bfloat16. The float32 comparisons give them
``momentum_dtype=torch.float32`` (optforge's default, HF's); ``bf16_momentum=True`` is
compared with their default on its own, to one bfloat16 step (see that test).
Reference path: ``foreach=False`` (their per-parameter code, as the other
pytorch-optimizer comparisons), and their default ``foreach=None`` batched path once.
Tolerance: float32 norm-relative 1e-6 (po_reference.TOL).
"""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.runtime.backends import BACKENDS
from tests.catalogue.po_reference import TOL, check_round_trip, config_id
from tests.conftest import SHAPES, norm_rel, run_side_by_side

po = pytest.importorskip("pytorch_optimizer")

F32 = dict(momentum_dtype=torch.float32)  # their default, bfloat16: BF16 below
CONFIGS = [  # pytorch-optimizer's keyword arguments
    dict(betas=(None, 0.999)),  # HF's defaults: relative step, scaled, no momentum
    dict(betas=(0.9, 0.999), warmup_init=True, clip_threshold=0.5, **F32),
    # the cap binds from step 3 (1 - 3^-0.8 = 0.585 > 0.5); plain lr, unscaled
    dict(lr=1e-2, relative_step=False, scale_parameter=False, betas=(None, 0.5),
         weight_decay=0.1),
    dict(lr=3e-2, relative_step=False, betas=(0.8, 0.9), weight_decay=0.01,
         weight_decouple=False, ams_bound=True, **F32),
    dict(betas=(0.9, 0.99), weight_decay=0.01, fixed_decay=True, decay_rate=-0.5,
         maximize=True, eps1=1e-2, eps2=2.0, **F32),  # eps2 > RMS(p): it binds
    dict(lr=1e-2, relative_step=False, betas=(0.9, 0.999), cautious=True, ams_bound=True, **F32),
]
BF16 = [dict(betas=(0.9, 0.999)),  # their default momentum: bfloat16
        dict(lr=1e-2, relative_step=False, betas=(0.8, 0.99), clip_threshold=0.5,
             weight_decay=0.01, cautious=True)]


def ours_kw(kw: dict) -> dict:
    """pytorch-optimizer's AdaFactor keyword arguments under AdafactorOriginal's names."""
    kw = dict(kw)
    beta1, cap = kw.pop("betas", (0.9, 0.999))
    dtype = kw.pop("momentum_dtype", torch.bfloat16)
    out = dict(beta1=beta1, beta2_cap=cap, eps=(kw.pop("eps1", 1e-30), kw.pop("eps2", 1e-3)),
               bf16_momentum=beta1 is not None and dtype == torch.bfloat16, **kw)
    if out.get("relative_step", True):  # theirs ignores lr (1e-3 by default); HF refuses it
        out["lr"] = None
    return out


def compare_states(ours: dict, theirs: dict, beta1):
    """The second moments (and the AMS maximum) at TOL; the momentum's presence and dtype.
    Its values are the parameter's steps, compared through the parameter: a sum of signed
    steps, it cancels, and a one-element momentum's relative error reached 2e-6 (the
    steps themselves ~10 float32 ulps apart, as everywhere)."""
    if "exp_avg_sq" in theirs:  # a vector or scalar: not factored
        pairs = [("exp_avg_sq_row", "exp_avg_sq")]
    else:
        pairs = [("exp_avg_sq_row", "exp_avg_sq_row"), ("exp_avg_sq_col", "exp_avg_sq_col")]
    pairs += [("exp_avg_sq_hat", "exp_avg_sq_hat")] if "exp_avg_sq_hat" in theirs else []
    assert ("exp_avg" in ours) == ("exp_avg" in theirs) == (beta1 is not None)
    assert ("exp_avg_sq_hat" in ours) == ("exp_avg_sq_hat" in theirs)
    for mine, key in pairs + ([("exp_avg", "exp_avg")] if beta1 is not None else []):
        assert ours[mine].dtype == theirs[key].dtype, key
    for mine, key in pairs:
        assert norm_rel(ours[mine].flatten(), theirs[key].flatten()) < TOL, key


def side_by_side(kw, shape, backend, foreach=False, starts=None):
    """run_side_by_side of ours and theirs (``starts`` receives the initial parameter)."""
    def ours(ps):
        if starts is not None:
            starts.append(ps[0].detach().clone())
        return optforge.AdafactorOriginal(ps, backend=backend, **ours_kw(kw))
    return run_side_by_side(ours, lambda ps: po.AdaFactor(ps, foreach=foreach, **kw), shape)


def check(kw, shape, backend, foreach=False):
    ours, ref, o1, o2 = side_by_side(kw, shape, backend, foreach)
    assert norm_rel(ours, ref) < TOL
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    compare_states(s1, s2, kw.get("betas", (0.9,))[0])


@pytest.mark.parametrize("shape", SHAPES + [()], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_matches_pytorch_optimizer(kw, shape, backend):
    check(kw, shape, backend)


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[3], CONFIGS[4]], ids=config_id)
def test_matches_their_batched_path(kw):
    check(kw, (257, 129), "auto", foreach=None)  # None: their default, foreach on CPU too


@pytest.mark.parametrize("shape", SHAPES + [()], ids=str)
@pytest.mark.parametrize("kw", BF16, ids=config_id)
def test_bf16_momentum_matches_theirs_to_a_bfloat16_step(kw, shape, backend):
    """Their default bfloat16 momentum, as ``bf16_momentum=True``: the update rounded to
    bfloat16, averaged, rounded again. The float32 updates are ~10 ulps apart (as
    everywhere), so where one lies at a bfloat16 halfway point the two roundings differ
    by one bfloat16 step there, and from then on (0.01-0.2% of the momentum's elements
    here; with the cautious mask, whose scale counts the elements, and the parameter's
    RMS in the step size, such a difference reaches every element). So: at least 99% of
    the momentum bitwise theirs, and the momentum and the parameter's total movement
    within one bfloat16 step of theirs in norm (norm-relative 2**-8; measured <= 4.1e-4;
    elementwise, a momentum that averaged to near 0 differs relatively by up to 1)."""
    starts = []
    ours, ref, o1, o2 = side_by_side(kw, shape, backend, starts=starts)
    (s1,), (s2,) = o1.state.values(), o2.state.values()
    m1, m2 = s1["exp_avg"], s2["exp_avg"]
    assert m1.dtype == m2.dtype == torch.bfloat16
    assert (m1 == m2).double().mean() >= 0.99
    assert norm_rel(m1, m2) < 2**-8
    assert norm_rel(ours - starts[0], ref - starts[0]) < 2**-8


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,), ()], ids=str)
@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_matches_pytorch_optimizer_on_triton(kw, shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    check(kw, shape, "triton")


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("shape", [(7, 13), (33,)], ids=str)
@pytest.mark.parametrize("kw", BF16, ids=config_id)
def test_bf16_momentum_on_triton(kw, shape):
    if DEVICE.type != "cpu":
        pytest.skip("run_side_by_side steps CPU tensors (the interpreter's case)")
    test_bf16_momentum_matches_theirs_to_a_bfloat16_step(kw, shape, "triton")


@pytest.mark.parametrize("kw", [CONFIGS[5], BF16[1]], ids=config_id)
def test_state_dict_round_trip_is_bitwise(kw, backend):
    # the AMS maximum and the bfloat16 momentum are saved and restored as they are
    check_round_trip("AdafactorOriginal", ours_kw(kw), backend)


def test_three_dimensions_are_refused_before_anything_moves():
    # theirs factors a (2, 3, 4) weight per leading index; optforge's row/column states
    # are those of the 2-D view, another optimizer: refused, naming the parameter
    p, q = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(2, 3, 4))
    opt = optforge.AdafactorOriginal([p, q], beta1=0.9, backend="torch")
    before = p.detach().clone()
    p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
    with pytest.raises(ValueError, match=r"parameter 1 of group 0 has shape \(2, 3, 4\)"):
        opt.step()
    assert torch.equal(p, before) and not opt.state


@pytest.mark.parametrize("kw, message", [
    (dict(cautious=True), "`cautious=True` .* needs a `beta1`"),
    (dict(bf16_momentum=True), "`bf16_momentum=True` .* needs a `beta1`"),
    (dict(weight_decouple=False, fixed_decay=True), "needs `weight_decouple=True`"),
    (dict(beta2_cap=1.5), "`beta2_cap` = 1.5"),
])
def test_option_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        optforge.AdafactorOriginal([torch.nn.Parameter(torch.zeros(3))], **kw)
