#!/usr/bin/env python
"""Per-step overhead of the orchestrator's training loop, in one process, without Ray or communication.

Builds the benchmark's 784-128-64-10 MLP (batch 64; or its 20M-parameter MLP, batch 32) exactly as a worker does (``worker.build``) with one
rank, then measures the CPU time per step (less disturbed by a shared machine than wall time), interleaved, of (a) the plainest loop on the same model and optimizer (pre-made batches
cycled: zero_grad, forward, loss, backward, step) and (b) the orchestrator's own ``Loop.fit`` with
every setting at its default. The difference is what the loop adds per step, all-reduce aside.

    python scripts/step_overhead.py                 # 5 interleaved reps of 3000 steps
    python scripts/step_overhead.py --profile out   # also a torch.profiler table of one loop run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

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


def overrides(steps: int) -> list:
    return ["model=mlp", f"model.hidden_sizes={HIDDEN}", "data=synthetic_classification", "data.num_features=784",
            "data.sample_shape=[1,28,28]", "data.num_classes=10", "data.num_samples=4096",
            f"data.batch_size={BATCH}", "data.val_fraction=0.0", "scaling.num_workers=1",
            f"trainer.max_steps={steps}", "trainer.max_epochs=1000", "checkpoint.every_epoch=false", "optimizer=sgd"]


def components(steps: int):
    cfg = compose(overrides(steps))
    data = data_module(registry.spec(cfg, "data"), cfg.trainer.seed)
    data.prepare()
    return build(cfg, data, AttemptPlan(0, 1, 1), 0, torch.device("cpu"))


def fit_cpu_seconds(steps: int) -> float:
    c = components(steps)
    t0 = time.process_time()
    loop.fit(c, Reporter(0, keeps_records=True))
    return time.process_time() - t0


def orchestrator_ms(steps: int) -> float:
    """CPU ms per step of Loop.fit: (2n steps - n steps) / n, so start and end costs cancel, and the other
    engineers' processes on this shared machine change it less than they change wall time."""
    return 1000.0 * (fit_cpu_seconds(2 * steps) - fit_cpu_seconds(steps)) / steps


def plain_ms(steps: int) -> float:
    c = components(steps)
    model, optimizer = c.module, c.optimizer
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = [c.splits.train.__getitems__(list(range(i * BATCH, (i + 1) * BATCH))) for i in range(32)]
    warmup = min(200, steps // 10)
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.process_time()
        x, y = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return 1000.0 * (time.process_time() - t0) / steps


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
    if args.profile:
        profile(min(args.steps, 1000), args.profile)
        return
    plain, orch = [], []
    for rep in range(args.reps):
        plain.append(plain_ms(args.steps))
        orch.append(orchestrator_ms(args.steps))
        print(f"rep {rep + 1}: plain {plain[-1]:.3f} ms/step, orchestrator {orch[-1]:.3f} ms/step", flush=True)
    mp, mo = statistics.median(plain), statistics.median(orch)
    print(f"median: plain {mp:.3f} ms/step (min {min(plain):.3f}), orchestrator {mo:.3f} ms/step (min {min(orch):.3f}), overhead {mo - mp:+.3f} ms/step "
          f"({mo / mp:.3f}x)")


if __name__ == "__main__":
    main()
