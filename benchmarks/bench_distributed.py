"""Communication and step time of sign-vote data parallelism vs DDP, on 2 gloo ranks over
loopback, and a short convergence run.

Part 1, an MLP of 1.58M fp32 parameters (256-1024-1024-256), batch 32 per rank:

* AdamW + DDP and Lion + DDP: optforge.AdamW / optforge.Lion after DDP's fp32 gradient
  all-reduce (gradient averaging, the usual data parallelism);
* DistributedLion (vote) and (average): plain per-rank models, no DDP; each step one
  all-gather of the packed sign bits (1 bit per parameter, written by the generated
  pre-stage kernel, a NaN flag byte per tensor, behind a 1-byte skip flag; counted by the
  generated update kernel: the rule's majority_vote / allreduce(bits=1),
  compiler/packed_signs.py, runtime/collective_stage.py), after
  the step's verdict: one all-reduce of 5 int64 (an error flag per rank, the sizes),
  runtime/step_verdict.py. Both are counted.

Bytes per step and rank, three ways: the *payload* handed to collectives (counted by a
DDP comm hook and by a counting wrapper around the torch.distributed calls of
optforge.runtime.collective_stage and step_verdict); the *wire* bytes a ring algorithm sends per rank for
that payload (all-reduce 2 (N-1)/N S, all-gather (N-1) S_rank); and the loopback
interface's transmitted bytes (/proc/net/dev, both ranks, divided by 2: TCP/IP framing
included, and other processes' loopback traffic too if the machine is shared). Time:
the median of 20 whole steps (zero_grad, forward, backward, communication, update)
after 3 warm-up steps, rank 0's clock, ranks aligned by a barrier before each step, the
variants' steps interleaved; wall time and the process's CPU time (all its threads: on
a shared, oversubscribed machine the CPU time is the steadier measure of the work);
and a DistributedLion step split into its parts. One torch and one numba thread per
rank (2 ranks on 2 cores).

Part 2, convergence: a student MLP (32-128-128-1) regressing a fixed random teacher;
each rank draws its own batch of 32 per step (seeded), 300 steps, held-out loss of
1024 points every 10 steps: DistributedLion (vote, average) vs Lion on averaged
gradients (DDP), same lr and betas, and AdamW + DDP for scale.

Usage: python benchmarks/bench_distributed.py   (writes JSON + PNG to benchmarks/results/)
"""
from __future__ import annotations

import json
import os
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
WORLD = 2
STEPS, WARMUP, BATCH = 20, 3, 32
CONV_STEPS, CONV_EVERY = 300, 10
CONV_LR = dict(lion=3e-4, adamw=1e-3)


class CountingDist:
    """torch.distributed with the bytes of every tensor handed to a collective counted."""

    def __init__(self, real):
        self.real, self.bytes, self.wire = real, 0, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def all_reduce(self, tensor, *args, **kwargs):
        size = tensor.numel() * tensor.element_size()
        self.bytes += size
        self.wire += 2 * (WORLD - 1) * size // WORLD
        return self.real.all_reduce(tensor, *args, **kwargs)

    def all_gather_single(self, output, tensor, *args, **kwargs):
        size = tensor.numel() * tensor.element_size()
        self.bytes += size
        self.wire += (WORLD - 1) * size
        gather = getattr(self.real, "all_gather_single", None) or self.real.all_gather_into_tensor
        return gather(output, tensor, *args, **kwargs)

    all_gather_into_tensor = all_gather_single


def loopback_tx() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])  # transmit bytes
    return 0


def variants():
    import optforge
    return {
        "AdamW + DDP": lambda ps: optforge.AdamW(ps, lr=1e-3, weight_decay=0.01),
        "Lion + DDP": lambda ps: optforge.Lion(ps, lr=1e-4, weight_decay=0.1),
        "DistributedLion (vote)": lambda ps: optforge.DistributedLion(ps, lr=1e-4,
                                                                       weight_decay=0.1),
        "DistributedLion (average)": lambda ps: optforge.DistributedLion(
            ps, lr=1e-4, weight_decay=0.1, aggregation="average"),
    }


def _wrap(name, model, counter):
    """DDP with a counting comm hook for the '+ DDP' variants; the bare model otherwise."""
    if "DDP" not in name:
        return model
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel as DDP
    ddp = DDP(model)

    def hook(state, bucket):
        size = bucket.buffer().numel() * bucket.buffer().element_size()
        counter.bytes += size
        counter.wire += 2 * (WORLD - 1) * size // WORLD
        return default_hooks.allreduce_hook(None, bucket)
    ddp.register_comm_hook(None, hook)
    return ddp


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 256))


def comm_and_time(rank):
    """Every variant's steps interleaved (step k of each variant in turn, the order rotated):
    a noisy neighbour slows them all alike."""
    from optforge.runtime import collective_stage, step_verdict
    runs = {}
    for name, make in variants().items():
        model, counter = _mlp(), CountingDist(dist)
        runs[name] = dict(model=model, counter=counter, module=_wrap(name, model, counter),
                          opt=make(model.parameters()), wall=[], cpu=[], tx=0)
    gen = torch.Generator().manual_seed(rank)
    names = list(runs)
    for k in range(WARMUP + STEPS):
        x, y = torch.randn(BATCH, 256, generator=gen), torch.randn(BATCH, 256, generator=gen)
        for name in names[k % len(names):] + names[:k % len(names)]:
            run = runs[name]
            collective_stage.dist = step_verdict.dist = run["counter"]
            if k == WARMUP:
                run["counter"].bytes = run["counter"].wire = 0
            dist.barrier()
            tx0, c0, t0 = loopback_tx(), time.process_time(), time.perf_counter()
            run["opt"].zero_grad()
            torch.nn.functional.mse_loss(run["module"](x), y).backward()
            run["opt"].step()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            dist.barrier()  # both ranks' sends are done before the counter is read
            if k >= WARMUP:
                run["wall"].append(wall)
                run["cpu"].append(cpu)
                run["tx"] += loopback_tx() - tx0
    collective_stage.dist = step_verdict.dist = dist
    results = {}
    for name, run in runs.items():
        results[name] = {
            "params": sum(p.numel() for p in run["model"].parameters()),
            "payload_bytes": run["counter"].bytes / STEPS, "wire_bytes": run["counter"].wire / STEPS,
            # both ranks send in the window, so halve; the barrier's few bytes are included
            "loopback_bytes": run["tx"] / WORLD / STEPS,
            "ms": 1e3 * statistics.median(run["wall"]),
            "cpu_ms": 1e3 * statistics.median(run["cpu"])}
    results["DistributedLion (vote)"]["phases_ms"] = phases(runs["DistributedLion (vote)"]["opt"])
    return results


def phases(opt, repeats=STEPS):
    """Median wall time of a DistributedLion step (its gradients as they are) and of its
    collective stage (pre-stage kernel writing the signs, pack, all-gather, vote count)."""
    from optforge.runtime import collective_stage, stepping
    parts = {"whole optimizer.step()": [],
             "collective stage (sign kernel+pack+all-gather+count)": []}
    real = collective_stage.exchange

    def timed(*args):
        t0 = time.perf_counter()
        real(*args)
        parts["collective stage (sign kernel+pack+all-gather+count)"].append(
            time.perf_counter() - t0)
    stepping.collective_stage.exchange = timed
    try:
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            opt.step()
            parts["whole optimizer.step()"].append(time.perf_counter() - t0)
    finally:
        stepping.collective_stage.exchange = real
    return {k: 1e3 * statistics.median(v) for k, v in parts.items()}


def convergence(rank):
    import optforge
    gen = torch.Generator().manual_seed(123)
    teacher = [torch.randn(32, 64, generator=gen) / 32 ** 0.5, torch.randn(64, 1, generator=gen)]

    def target(x):
        return torch.tanh(x @ teacher[0]) @ teacher[1]
    x_eval = torch.randn(1024, 32, generator=gen)
    y_eval = target(x_eval)
    makers = {
        "Lion + DDP (averaged gradients)": lambda ps: optforge.Lion(ps, lr=CONV_LR["lion"]),
        "DistributedLion (vote)": lambda ps: optforge.DistributedLion(ps, lr=CONV_LR["lion"]),
        "DistributedLion (average)": lambda ps: optforge.DistributedLion(
            ps, lr=CONV_LR["lion"], aggregation="average"),
        "AdamW + DDP": lambda ps: optforge.AdamW(ps, lr=CONV_LR["adamw"]),
    }
    curves = {}
    for name, make in makers.items():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 1))
        module = _wrap(name, model, CountingDist(dist))
        opt = make(model.parameters())
        data = torch.Generator().manual_seed(1000 + rank)  # each rank its own batches
        curve = []
        for k in range(CONV_STEPS + 1):
            if k % CONV_EVERY == 0:
                with torch.no_grad():
                    curve.append((k, float(torch.nn.functional.mse_loss(model(x_eval), y_eval))))
            if k == CONV_STEPS:
                break
            x = torch.randn(BATCH, 32, generator=data)
            opt.zero_grad()
            torch.nn.functional.mse_loss(module(x), target(x)).backward()
            opt.step()
        curves[name] = curve
    return curves


def _entry(rank, store_dir, out_dir):
    import numba
    torch.set_num_threads(1)  # one thread per rank: 2 ranks on 2 cores
    numba.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_dir}/store", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=120))
    try:
        out = {"comm": comm_and_time(rank), "convergence": convergence(rank)}
        if rank == 0:
            Path(out_dir, "rank0.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def table(comm) -> str:
    base = comm["AdamW + DDP"]
    lines = [f"{'variant':28} {'payload B/step':>15} {'wire B/step':>12} {'loopback B/step':>16} "
             f"{'x fewer':>8} {'ms/step':>8} {'CPU ms/step':>12}"]
    for name, r in comm.items():
        lines.append(f"{name:28} {r['payload_bytes']:15,.0f} {r['wire_bytes']:12,.0f} "
                     f"{r['loopback_bytes']:16,.0f} {base['wire_bytes'] / r['wire_bytes']:8.1f} "
                     f"{r['ms']:8.2f} {r['cpu_ms']:12.2f}")
    phases = comm["DistributedLion (vote)"]["phases_ms"]
    lines.append("DistributedLion (vote) step, median ms: " +
                 "; ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    return "\n".join(lines)


def plot(out, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    comm, curves = out["comm"], out["convergence"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    names = list(comm)
    labels = [n.replace(" (", "\n(") for n in names]
    axes[0].bar(labels, [comm[n]["wire_bytes"] for n in names], color="C0", label="ring model")
    axes[0].scatter(labels, [comm[n]["loopback_bytes"] for n in names], color="C3", zorder=3,
                    label="loopback measured")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("bytes sent per rank per step")
    axes[0].legend()
    xs = range(len(names))
    axes[1].bar([x - 0.2 for x in xs], [comm[n]["ms"] for n in names], 0.4, color="C1",
                label="wall")
    axes[1].bar([x + 0.2 for x in xs], [comm[n]["cpu_ms"] for n in names], 0.4, color="C2",
                label="CPU (process)")
    axes[1].set_xticks(list(xs), labels)
    axes[1].set_ylabel("ms per step (fwd+bwd+comm+update), median")
    axes[1].legend()
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=7)
    for name, curve in curves.items():
        # with 2 workers sign(s1 + s2) = (s1 + s2) / 2: the two aggregations coincide
        same = WORLD == 2 and name == "DistributedLion (average)"
        axes[2].plot([k for k, _ in curve], [v for _, v in curve], "--" if same else "-",
                     label=name + (" = vote for 2 workers" if same else ""))
    axes[2].set_yscale("log")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("held-out MSE")
    axes[2].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_elementwise import machine
    info = machine()
    store_dir, out_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    start = time.monotonic()
    mp.start_processes(_entry, args=(store_dir, out_dir), nprocs=WORLD, start_method="spawn")
    out = json.loads(Path(out_dir, "rank0.json").read_text())
    info.update(world=WORLD, backend="gloo", load_avg_at_end=os.getloadavg(),
                seconds=round(time.monotonic() - start, 1))
    text = table(out["comm"])
    print(f"machine: {info['cpus']} CPUs, {info['model']}, torch {info['torch']}; {WORLD} gloo "
          f"ranks on loopback; load average {info['load_avg_at_start']} -> "
          f"{info['load_avg_at_end']}")
    print(text)
    print("\nheld-out MSE at steps 0 / 100 / 200 / 300:")
    for name, curve in out["convergence"].items():
        at = dict(curve)
        print(f"  {name:34} " + " / ".join(f"{at[k]:.4f}" for k in (0, 100, 200, 300)))
    RESULTS.mkdir(exist_ok=True)
    slug = re.sub(r"\W+", "-", info["model"]).strip("-").lower()
    stem = RESULTS / f"distributed-cpu{info['cpus']}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, **out, "table": text},
                                                    indent=1))
    plot(out, stem.with_suffix(".png"), f"{WORLD} gloo ranks, loopback; {info['cpus']} CPUs, "
         f"{info['model']}")
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
