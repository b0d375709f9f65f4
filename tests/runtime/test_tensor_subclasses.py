"""Raw-memory launchers (numba, triton) never get a tensor subclass they do not understand.

A DTensor (FSDP2's fully_shard) reports the global numel but its data_ptr is the local
shard's: the numba launcher took that pair and wrote out of bounds (issue 17: a
segfault with 2 ranks). The step now hands every kernel the local shard (runtime/shards.py),
so numba steps DTensors like torch.optim.AdamW; any other wrapper subclass is refused
in the check phase, before any kernel, with an error naming the parameter. Run in a
subprocess: a process group must not outlive the test.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.triton_env import DEVICE  # noqa: F401,I001 - sets TRITON_INTERPRET first

import optforge
from optforge.kernels.raw_memory import UnsupportedTensorError, is_raw

ROOT = Path(__file__).resolve().parents[2]


def test_plain_and_parameter_subclasses_are_raw():
    class MyParam(torch.nn.Parameter):
        pass

    assert is_raw(torch.ones(2)) and is_raw(torch.nn.Parameter(torch.ones(2)))
    assert is_raw(MyParam(torch.ones(2)))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_fsdp2_dtensor_steps_its_local_shard_on_numba_and_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "tests/runtime/dtensor_worker.py"),
                           str(tmp_path / "store")], capture_output=True, text=True,
                          timeout=180, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # each like torch.optim.AdamW on the same DTensor (triton: the interpreter on CPU)
    for backend in ("numba", "triton", "torch"):
        row = out[backend]
        assert row["type"] == "DTensor"
        assert row["error"] is None and row["max_diff"] < 1e-6, (backend, row)


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_a_wrapper_subclass_never_reaches_a_kernel(backend):
    """The same refusal without torch.distributed: a minimal __torch_dispatch__ subclass."""
    class Wrapper(torch.Tensor):
        @staticmethod
        def __new__(cls, inner):
            return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)

        def __init__(self, inner):
            self.inner = inner

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            def unwrap(x):
                return x.inner if isinstance(x, Wrapper) else x
            return func(*[unwrap(a) for a in args],
                        **{k: unwrap(v) for k, v in (kwargs or {}).items()})

    p = Wrapper(torch.ones(5))
    p.grad = torch.ones(5)
    opt = optforge.SGD([p], lr=0.1, backend=backend)
    with pytest.raises(UnsupportedTensorError, match="parameter 0 of group 0 is a .*Wrapper"):
        opt.step()
    assert torch.equal(p.inner, torch.ones(5)) and not opt.state.get(p)
