"""Run by test_tensor_subclasses.py in a fresh process: a 1-rank gloo group, FSDP2's
fully_shard on a tiny Linear (DTensor parameters), optforge.AdamW on it and
torch.optim.AdamW on an unsharded copy. Prints one JSON line: what each backend did."""
import json
import sys
import tempfile

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import optforge


def main(store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    out = {}
    try:
        for backend in ("numba", "triton", "torch"):
            torch.manual_seed(0)
            model, ref = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
            ref.load_state_dict(model.state_dict())
            fully_shard(model)
            before = [p.full_tensor().clone() for p in model.parameters()]
            opt = optforge.AdamW(model.parameters(), lr=0.1, backend=backend)
            ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.1)
            x = torch.randn(2, 4)
            model(x).sum().backward()
            ref(x).sum().backward()
            row = {"type": type(next(model.parameters())).__name__}
            try:
                opt.step()
                ref_opt.step()
                row["error"] = None
                row["max_diff"] = max(float((p.full_tensor() - r).abs().max())
                                      for p, r in zip(model.parameters(), ref.parameters()))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["unchanged"] = all(torch.equal(p.full_tensor(), b)
                                       for p, b in zip(model.parameters(), before))
                row["no_state"] = not any(opt.state.get(p) for p in model.parameters())
            out[backend] = row
    finally:
        dist.destroy_process_group()
    print(json.dumps(out))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        main(sys.argv[1] if len(sys.argv) > 1 else f"{d}/store")
