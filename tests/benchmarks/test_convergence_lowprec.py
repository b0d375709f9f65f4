"""Issue 16's convergence check with every storage option at its DEFAULT settings
(benchmarks/convergence_lowprec.py): a 64-256-256-1 MLP, 400 AdamW steps. bf16 states
rounded stochastically and 8-bit block-wise states (blocks of 256, tensors below 4096
elements in float32: here 99% of the parameters are quantized) end within 2% of the
full-data loss of float32 states."""
import json
from tests.benchmarks.bench_import import benchmark_modules



def _convergence():
    return benchmark_modules("convergence_lowprec")[0]


def test_default_lean_states_end_within_2_percent_of_fp32_states(tmp_path):
    stem = _convergence().main(["--out", str(tmp_path)])
    data = json.loads(stem.with_suffix(".json").read_text())
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final, gap = data["final_loss"], data["relative_gap_to_fp32"]
    assert final["fp32 states"] < 0.1 * data["initial_loss"]  # it trains
    # the 8-bit run really stores both hidden weight matrices' states in 8 bits
    assert data["setup"]["quantized_fraction"]["8-bit states (defaults)"] > 0.98
    assert data["setup"]["options"]["8-bit states (defaults)"] == {"state_dtype": "int8"}
    assert abs(gap["bf16 states SR"]) < 0.02
    assert abs(gap["8-bit states (defaults)"]) < 0.02
    assert gap["8-bit states (defaults)"] == (final["8-bit states (defaults)"]
                                              - final["fp32 states"]) / final["fp32 states"]
