"""Per-step cost of StepStats on the CPU: `add` (every step) and `add` + `close_row` (a log step).

    python scripts/timeit_step_stats.py

Prints the best of 5 repeats in microseconds per call. Used to check that naming the host
counters did not slow the step path; compare against a checkout of the previous commit.
"""

from __future__ import annotations

import timeit

import torch

from orchestrator.worker.stats import StepStats

TIMES = {"data_s": 0.001, "compute_s": 0.004, "optimizer_s": 0.001, "step_s": 0.006}
CALLS = 100_000


def main() -> None:
    stats = StepStats(torch.device("cpu"), has_accuracy=True)
    loss, correct = torch.tensor(16.0), torch.tensor(3.0)

    def add() -> None:
        stats.add(loss, correct, 8, 8, TIMES)

    def log_step() -> None:
        stats.add(loss, correct, 8, 8, TIMES)
        stats.close_row(1, 0.1, None)
        if len(stats.device_rows) >= 64:  # as a flush would, without the reduction
            stats.device_rows, stats.host_rows, stats.meta = [], [], []

    for label, fn in (("add", add), ("add + close_row", log_step)):
        best = min(timeit.repeat(fn, number=CALLS, repeat=5)) / CALLS
        print(f"{label:16s} {best * 1e6:7.3f} us/call")


if __name__ == "__main__":
    main()
