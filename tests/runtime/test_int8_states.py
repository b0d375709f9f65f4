"""8-bit block-wise states in the runtime: storage cost, small tensors, checkpoints."""
import pytest
import torch

from tests.triton_env import DEVICE  # noqa: I001 - sets TRITON_INTERPRET first

import optforge
from optforge.compiler.errors import CompileError
from optforge.compiler.quant_format import QuantFormat, code_of_value
from optforge.compiler.quant_map import code_of, midpoints
from optforge.kernels.quantized import pack, unpack


def _stepped(numels, backend="numba", steps=2, **options):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n)) for n in numels]
    opt = optforge.AdamW(params, backend=backend, **options)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return params, opt


def test_8bit_adamw_keeps_at_most_2_1_bytes_of_state_per_parameter():
    params, opt = _stepped([1_000_003], state_dtype="int8")
    state = opt.state[params[0]]
    stored = sum(t.untyped_storage().nbytes() for k, t in state.items() if k != "step")
    assert state["exp_avg"].dtype == torch.uint8
    assert stored / params[0].numel() <= 2.1
    assert opt.state_bytes_per_param(state_dtype="int8") <= 2.1


def test_small_tensors_keep_float32_states_and_large_ones_8_bits():
    params, opt = _stepped([100, 5000], state_dtype="int8")
    assert opt.state[params[0]]["exp_avg"].dtype == torch.float32
    assert opt.state[params[1]]["exp_avg"].dtype == torch.uint8
    assert opt.state[params[1]]["exp_avg_sq"].numel() == QuantFormat(False).packed_bytes(5000)


def test_8bit_states_follow_fp32_states_closely():
    params, opt = _stepped([5000], state_dtype="int8", steps=3)
    ref_params, ref = _stepped([5000], steps=3)
    fmt = QuantFormat(True)
    m = unpack(opt.state[params[0]]["exp_avg"], fmt, (5000,))
    m_ref = ref.state[ref_params[0]]["exp_avg"]
    assert (m - m_ref).abs().max() <= 0.02 * m_ref.abs().max()


@pytest.mark.parametrize("signed", [True, False])
def test_table_quantizer_is_the_binary_search(signed):
    g = torch.Generator().manual_seed(0)
    values = torch.rand(20000, generator=g) * 10 ** (-8 * torch.rand(20000, generator=g))
    if signed:
        values = values * torch.where(torch.rand(20000, generator=g) < 0.5, -1.0, 1.0)
    edges = torch.tensor(midpoints(signed))
    candidates = [*values.tolist(), *edges.tolist(), *torch.nextafter(edges, edges + 1).tolist(),
                  *torch.nextafter(edges, edges - 1).tolist(), 0.0, -0.0, 1.0]
    for y in candidates:
        if signed or y >= 0:
            assert code_of_value(y, signed) == code_of(y, signed), y


def test_checkpoint_saves_codes_and_scales_and_loads_exactly():
    params, opt = _stepped([5000, 10], state_dtype="int8")
    saved = opt.state_dict()
    state = saved["state"][0]
    assert state["exp_avg"].shape == (5000,) and state["exp_avg"].dtype == torch.uint8
    assert state["exp_avg.absmax"].numel() == 20 and state["exp_avg_sq.format"] == "q8u256"
    assert opt.state[params[0]]["exp_avg"].numel() == QuantFormat(True).packed_bytes(5000)
    other, fresh = _stepped([5000, 10], state_dtype="int8", steps=1)
    fresh.load_state_dict(saved)
    for p, q in zip(params, other):
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][k], fresh.state[q][k])


def test_fp32_checkpoint_loads_into_8bit_optimizer_and_back():
    params, fp32 = _stepped([5000])
    other, int8 = _stepped([5000], state_dtype="int8", steps=1)
    int8.load_state_dict(fp32.state_dict())
    m = fp32.state[params[0]]["exp_avg"]
    assert torch.equal(int8.state[other[0]]["exp_avg"], pack(m, QuantFormat(True)))
    again, back = _stepped([5000], steps=1, state_dtype="float32")  # (else the saved int8 applies)
    back.load_state_dict(int8.state_dict())
    assert back.state[again[0]]["exp_avg"].dtype == torch.float32
    assert torch.equal(back.state[again[0]]["exp_avg"],
                       unpack(pack(m, QuantFormat(True)), QuantFormat(True), (5000,)))
    # and both step on with the storage they chose (not the checkpoint's)
    assert back.param_groups[0]["state_dtype"] == "float32"
    assert int8.param_groups[0]["state_dtype"] == "int8"
    for p in (*other, *again):
        p.grad = torch.ones_like(p)
    int8.step()
    back.step()
    assert int8.state[other[0]]["exp_avg"].dtype == torch.uint8
    assert back.state[again[0]]["exp_avg"].dtype == torch.float32


def test_bad_options_are_refused_by_name():
    p = [torch.nn.Parameter(torch.randn(10))]
    with pytest.raises(ValueError, match="quant_block=100"):
        optforge.AdamW(p, state_dtype="int8", quant_block=100)
    with pytest.raises(ValueError, match="quant_min_numel"):
        optforge.AdamW(p, state_dtype="int8", quant_min_numel=-1)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_complex_parameters_are_refused_before_anything_moves(backend):
    z = torch.nn.Parameter(torch.randn(5000, dtype=torch.complex64))
    z.grad = torch.randn(5000, dtype=torch.complex64)
    before = z.detach().clone()
    opt = optforge.AdamW([z], backend=backend, state_dtype="int8")
    with pytest.raises(ValueError, match="complex parameters"):
        opt.step()
    assert torch.equal(z.detach(), before) and not opt.state[z]


def test_transposed_parameter_steps_like_a_contiguous_one():
    torch.manual_seed(0)
    w, g = torch.randn(80, 100), torch.randn(80, 100)
    a = torch.nn.Parameter(w.t())  # (100, 80), a view of an (80, 100) buffer
    b = torch.nn.Parameter(w.t().contiguous())
    a.grad, b.grad = g.t(), g.t().contiguous()
    for p in (a, b):
        optforge.AdamW([p], backend="numba", state_dtype="int8").step()
    assert not a.is_contiguous() and torch.equal(a.detach(), b.detach())


def _independent_steps(backend, dtype):
    """Two AdamW steps with 8-bit states on gradients that do not depend on the step."""
    torch.manual_seed(0)
    device = DEVICE if backend == "triton" else "cpu"
    params = [torch.nn.Parameter(torch.randn(n).to(dtype).to(device)) for n in (5000, 300)]
    opt = optforge.AdamW(params, backend=backend, state_dtype="int8", quant_min_numel=0)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(dtype).to(device)
        opt.step()
    return [t.cpu() for p in params for t in (p.detach(), *opt.state[p].values())]


@pytest.mark.parametrize("backend, dtype", [("numba", torch.bfloat16), ("numba", torch.float64),
                                            ("triton", torch.bfloat16)])
def test_8bit_states_with_16_and_64_bit_parameters_match_torch(backend, dtype):
    ours, ref = _independent_steps(backend, dtype), _independent_steps("torch", dtype)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))


def test_a_multi_pass_rule_refused_at_its_first_step_leaves_everything_as_it_was():
    """LAMB (a reduce stage) cannot keep 8-bit states: the refusal names the rule and its
    states, and the parameter, the gradient and the (empty) state are as they were."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64, 128, generator=gen))
    p.grad = torch.randn(64, 128, generator=gen)
    before, grad = p.detach().clone(), p.grad.clone()
    opt = optforge.LAMB([p], state_dtype="int8", quant_min_numel=0)
    with pytest.raises(CompileError, match="rule 'LAMB': 8-bit states .*one elementwise pass"):
        opt.step()
    assert torch.equal(p.detach(), before) and torch.equal(p.grad, grad)
    assert len(opt.state) == 0 or all(not s for s in opt.state.values())
