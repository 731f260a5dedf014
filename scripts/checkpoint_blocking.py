"""How long a checkpoint blocks training, synchronous vs asynchronous, direct to storage (no Ray).

    python scripts/checkpoint_blocking.py --mb 10 100 --repeats 3

A model of about MB megabytes (Adam doubles the state: weights + two moments) is saved by rank 0's
CheckpointWriter into a temp folder; blocked_ms is what the training loop waits for (snapshot, and the
whole write when synchronous), write_ms the write itself.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from orchestrator.checkpoint import state as S
from orchestrator.checkpoint.writer import CheckpointWriter
from orchestrator.records import MetricsRecord


def trainables(mb: int) -> S.Trainables:
    width = 1024
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(max(1, mb * 2 ** 20 // (4 * width * width)))])
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, width)).sum().backward()
    optimizer.step()
    return S.Trainables(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))


def measure(mb: int, async_save: bool, repeats: int):
    objects, records = trainables(mb), []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        writer = CheckpointWriter(records.append, folder, async_save)
        for step in range(repeats):
            writer.save(step, S.capture_payload(objects, S.TrainState(step=step), 1), 0, {})
            writer.wait()  # the next save would wait for it anyway; keeps the measurements apart
    timings = [r.values for r in records if isinstance(r, MetricsRecord)]
    return (statistics.median(t["checkpoint/blocked_ms"] for t in timings),
            statistics.median(t["checkpoint/write_ms"] for t in timings))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| model MB | async_save | blocked_ms (median) | write_ms (median) |\n|---|---|---|---|")
    for mb in args.mb:
        for async_save in (False, True):
            blocked, write = measure(mb, async_save, args.repeats)
            print(f"| {mb} | {async_save} | {blocked:.0f} | {write:.0f} |", flush=True)


if __name__ == "__main__":
    main()
