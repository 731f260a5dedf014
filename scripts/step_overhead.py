#!/usr/bin/env python
"""Per-step overhead of the orchestrator's training loop, without Ray: in one process, or under torchrun.

Builds the benchmark's 784-128-64-10 MLP (batch 64; or its 20M-parameter MLP, batch 32) exactly as a
worker does (``worker.build``), then measures, interleaved, (a) the plainest loop on the same model and
optimizer (pre-made batches cycled: zero_grad, forward, loss, backward, step) and (b) the orchestrator's
own ``Loop.fit`` with every setting at its default. The difference is what the loop adds per step.

In one process (one rank, no DDP) it counts CPU time, which a shared machine disturbs less than wall
time. Under torchrun (N ranks, gloo, DDP) it counts wall time between barriers: the loop's cost with its
all-reduce and sync points, and nothing of Ray (no actors, driver, sink or daemons).

    python scripts/step_overhead.py                 # 5 interleaved reps of 3000 steps
    python scripts/step_overhead.py --profile out   # also a torch.profiler table of one loop run
    python -m torch.distributed.run --standalone --nproc_per_node=2 scripts/step_overhead.py --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist

from orchestrator.components import registry
from orchestrator.composition import compose
from orchestrator.data.module import data_module
from orchestrator.policy.plan import AttemptPlan
from orchestrator.worker import loop
from orchestrator.worker.build import build
from orchestrator.worker.reporting import Reporter

# The benchmark's MLPs (scripts/bench/workloads.py): hidden sizes, per-worker batch.
WORKLOADS = {"mlp": ("[128,64]", 64), "wide_mlp": ("[4096,4096]", 32)}
HIDDEN, BATCH = WORKLOADS["mlp"]


def world() -> tuple:
    """(rank, world size): torchrun's, else one rank."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def overrides(steps: int) -> list:
    return ["model=mlp", f"model.hidden_sizes={HIDDEN}", "data=synthetic_classification", "data.num_features=784",
            "data.sample_shape=[1,28,28]", "data.num_classes=10", "data.num_samples=4096",
            f"data.batch_size={BATCH}", "data.val_fraction=0.0", f"scaling.num_workers={world()[1]}",
            f"trainer.max_steps={steps}", "trainer.max_epochs=1000", "checkpoint.every_epoch=false", "optimizer=sgd"]


def components(steps: int):
    cfg = compose(overrides(steps))
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.prepare()
    rank, size = world()
    return build(cfg, data, AttemptPlan(0, size, 1), rank, torch.device("cpu"))


def clock() -> float:
    """CPU time in one process; wall time, after all ranks meet, under torchrun (ranks wait for each other)."""
    if dist.is_initialized():
        dist.barrier()
        return time.perf_counter()
    return time.process_time()


def fit_seconds(steps: int) -> float:
    c = components(steps)
    t0 = clock()
    loop.fit(c, Reporter(c.rank, keeps_records=True))
    return clock() - t0


def orchestrator_ms(steps: int) -> float:
    """ms per step of Loop.fit: (2n steps - n steps) / n, so start and end costs cancel (and in one
    process, the other processes on a shared machine change CPU time less than they change wall time)."""
    return 1000.0 * (fit_seconds(2 * steps) - fit_seconds(steps)) / steps


def plain_ms(steps: int) -> float:
    c = components(steps)
    model, optimizer = c.model, c.optimizer  # the DDP wrapper under torchrun, else the module
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = [c.splits.train.__getitems__(list(range(i * BATCH, (i + 1) * BATCH))) for i in range(32)]
    warmup = min(200, steps // 10)
    for i in range(steps + warmup):
        if i == warmup:
            t0 = clock()
        x, y = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return 1000.0 * (clock() - t0) / steps


def profile(steps: int, out: str) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    c = components(steps)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        loop.fit(c, Reporter(0, keeps_records=True))
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
    with open(out, "w") as f:
        f.write(table)
    print(table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="mlp")
    p.add_argument("--profile", default=None, help="write a torch.profiler table of one loop run here")
    args = p.parse_args()
    global HIDDEN, BATCH
    HIDDEN, BATCH = WORKLOADS[args.workload]
    torch.set_num_threads(1)
    rank, size = world()
    if size > 1:
        dist.init_process_group("gloo")
    say = print if rank == 0 else (lambda *a, **k: None)
    if args.profile:
        profile(min(args.steps, 1000), args.profile)
        return
    plain, orch = [], []
    for rep in range(args.reps):
        plain.append(plain_ms(args.steps))
        orch.append(orchestrator_ms(args.steps))
        say(f"rep {rep + 1}: plain {plain[-1]:.3f} ms/step, orchestrator {orch[-1]:.3f} ms/step", flush=True)
    mp, mo = statistics.median(plain), statistics.median(orch)
    clock_kind = f"wall time, {size} ranks (DDP, gloo)" if size > 1 else "CPU time, one process"
    say(f"{args.workload}, {clock_kind}. median: plain {mp:.3f} ms/step (min {min(plain):.3f}), orchestrator {mo:.3f} ms/step (min {min(orch):.3f}), overhead {mo - mp:+.3f} ms/step "
          f"(time ratio {mo / mp:.3f})")
    if size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
