"""FSDP2 (``fully_shard``): optforge's optimizer step on the shards vs torch.optim's, on 2 gloo
ranks over loopback.

Model: an MLP of 1.58M fp32 parameters (256-1024-1024-256), each Linear its own FSDP2
unit, then the root; every parameter a DTensor sharded on dimension 0.

* AdamW: optforge.AdamW (numba, on the local shards, no communication) vs
  torch.optim.AdamW (foreach, DTensor ops) on the same shards;
* Muon: optforge.Muon on the three weights (AdamW on the biases): each weight gathered on
  one owning rank (round robin), Newton-Schulz there, the result scattered back; vs
  torch.optim.Muon on the weights (torch.optim.AdamW on the biases), whose Newton-Schulz
  runs DTensor matmuls (redistributing the shards itself).

Time: ``optimizer.step()`` alone on fixed gradients (one backward before the warm-up),
median of STEPS steps after WARMUP, rank 0's clock, the ranks aligned by a barrier
before each step, the variants interleaved; wall time, and each rank's process CPU time
(a rank waiting in a collective spends none: the CPU times show where the work ran). Bytes per rank
and step: the *payload* optforge hands to torch.distributed in its step (all-reduce,
gather, scatter; counted by wrapping those functions), and the loopback interface's
transmitted bytes over the timed steps (both ranks, divided by 2: TCP framing
included, and any other process's loopback traffic). One torch and one numba thread per
rank (2 ranks on 2 cores).

Usage: python benchmarks/bench_fsdp2.py   (prints a table, writes JSON to benchmarks/results/)
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

RESULTS = Path(__file__).with_name("results")
WORLD, STEPS, WARMUP, BATCH = 2, 15, 3, 32
COLLECTIVES = ("all_reduce", "gather", "scatter")


def loopback_tx() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])  # transmit bytes
    return 0


class Payload:
    """Counts the bytes of the tensors handed to torch.distributed's collectives."""

    def __init__(self):
        self.bytes, self.originals = 0, {}

    def __enter__(self):
        for name in COLLECTIVES:
            real = self.originals[name] = getattr(dist, name)
            setattr(dist, name, self._counting(real))
        return self

    def __exit__(self, *exc):
        for name, real in self.originals.items():
            setattr(dist, name, real)

    def _counting(self, real):
        def call(tensor, *args, **kwargs):
            pieces = args[0] if args and isinstance(args[0], list) else None
            if real.__name__ == "scatter":  # the owner sends every piece
                self.bytes += sum(p.numel() * p.element_size() for p in pieces or [])
            else:
                self.bytes += tensor.numel() * tensor.element_size()
            return real(tensor, *args, **kwargs)
        return call


def _model():
    from torch.distributed.fsdp import fully_shard
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 256))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


class Pair:
    """torch.optim optimizers stepped together (Muon on weights + AdamW on biases)."""

    def __init__(self, *opts):
        self.opts = opts

    def step(self):
        for opt in self.opts:
            opt.step()


def variants(model):
    import optforge
    weights = [p for p in model.parameters() if p.dim() == 2]
    biases = [p for p in model.parameters() if p.dim() < 2]
    return {
        "optforge.AdamW (numba)": lambda: optforge.AdamW(model.parameters(), lr=1e-3,
                                                         backend="numba"),
        "torch.optim.AdamW": lambda: torch.optim.AdamW(model.parameters(), lr=1e-3),
        "optforge.Muon": lambda: optforge.Muon(optforge.split_matrix_params(
            model, other=optforge.AdamW, lr=1e-3), lr=0.02),
        "torch.optim.Muon": lambda: Pair(torch.optim.Muon(weights, lr=0.02),
                                         torch.optim.AdamW(biases, lr=1e-3)),
    }


def _timed(opt) -> tuple[float, float, int, int]:
    dist.barrier()
    tx = loopback_tx()
    with Payload() as payload:
        dist.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        opt.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        dist.barrier()
        sent = payload.bytes
    return wall * 1e3, cpu * 1e3, sent, loopback_tx() - tx


def measure(rank: int) -> dict:
    model = _model()
    gen = torch.Generator().manual_seed(rank)
    model(torch.randn(BATCH, 256, generator=gen)).square().mean().backward()
    found, opts = {}, {}
    for name, make in variants(model).items():
        try:
            opts[name] = make()
            for _ in range(WARMUP):
                opts[name].step()
        except Exception as exc:  # noqa: BLE001 - a variant torch cannot run is reported
            found[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            opts.pop(name, None)
    runs = {name: [] for name in opts}
    for _ in range(STEPS):
        for name, opt in opts.items():
            runs[name].append(_timed(opt))
    for name, rows in runs.items():
        found[name] = {"ms": statistics.median(r[0] for r in rows),
                       "cpu_ms": statistics.median(r[1] for r in rows),
                       "payload_bytes": statistics.median(r[2] for r in rows),
                       "loopback_bytes": statistics.median(r[3] for r in rows) / WORLD}
    return found


def _entry(rank, store_dir, out_dir):
    import numba
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=120))
    try:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(measure(rank)))
    finally:
        dist.destroy_process_group()


def table(found: dict) -> str:
    lines = [f"{'variant':26} {'ms/step':>8} {'CPU ms r0':>10} {'CPU ms r1':>10} "
             f"{'payload B r0':>13} {'payload B r1':>13} {'loopback B/step':>16}"]
    for name, r in found.items():
        if "error" in r:
            lines.append(f"{name:26} n/a: {r['error']}")
            continue
        lines.append(f"{name:26} {r['ms']:8.2f} {r['cpu_ms']:10.2f} {r['cpu_ms_rank1']:10.2f} "
                     f"{r['payload_bytes']:13,.0f} {r['payload_bytes_rank1']:13,.0f} "
                     f"{r['loopback_bytes']:16,.0f}")
    return "\n".join(lines)


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_elementwise import machine
    info = machine()
    store_dir, out_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    mp.start_processes(_entry, args=(store_dir, out_dir), nprocs=WORLD, start_method="spawn")
    found = json.loads(Path(out_dir, "rank0.json").read_text())
    for name, r in json.loads(Path(out_dir, "rank1.json").read_text()).items():
        if "error" not in r:  # rank 1's own work: its CPU time and what it sent
            found[name].update(cpu_ms_rank1=r["cpu_ms"], payload_bytes_rank1=r["payload_bytes"])
    text = table(found)
    print(f"machine: {info['cpus']} CPUs, {info['model']}, torch {info['torch']}; {WORLD} gloo "
          f"ranks on loopback; load average at start {info['load_avg_at_start']}")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    path = RESULTS / f"fsdp2-cpu{info['cpus']}-{slug}.json"
    path.write_text(json.dumps({"machine": info, "results": found, "table": text}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
