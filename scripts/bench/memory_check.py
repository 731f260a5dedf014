"""Peak memory of all processes with 2 workers on one dataset of --memory-gb, against the same run on a
tiny dataset: the difference is what the data costs. The orchestrator puts it in the object store once
(workers map it); torchrun's ranks each build their own copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.execute import run_one
from bench.peers import FAILED, OK, RunSettings
from bench.report import fmt

MEMORY_RUNNERS = ["torchrun", "orchestrator"]
ROW_BYTES = 3 * 32 * 32 * 4  # one float32 sample of the `memory` workload
TINY_SAMPLES = 4096


def memory_check(settings: RunSettings, gigabytes: float, logs: Path) -> list:
    large_samples = int(gigabytes * 2**30 / ROW_BYTES)
    rows = []
    for runner in MEMORY_RUNNERS:
        peaks = {size: measure(runner, samples, settings, logs)
                 for size, samples in (("tiny", TINY_SAMPLES), ("large", large_samples))}
        rows.append(memory_row(runner, peaks["tiny"], peaks["large"], large_samples * ROW_BYTES / 2**20))
    return rows


def measure(runner: str, samples: int, settings: RunSettings, logs: Path) -> dict:
    print(f"[memory] {runner}, 2 workers, {samples * ROW_BYTES / 2**20:,.0f} MiB dataset ...", end=" ", flush=True)
    mem_settings = dataclasses.replace(settings, num_samples=samples, steps=30, warmup=5)
    row = run_one(runner, "memory", 2, 1, mem_settings, logs)
    print(f"peak {fmt(row['peak_mem_mb'], ',.0f')} MiB" if row["status"] == OK else row["note"], flush=True)
    return row


def memory_row(runner: str, tiny: dict, large: dict, dataset_mb: float) -> dict:
    extra = (large["peak_mem_mb"] - tiny["peak_mem_mb"]
             if large.get("peak_mem_mb") and tiny.get("peak_mem_mb") else None)
    return {"runner": runner, "status": OK if extra is not None else FAILED,
            "note": "; ".join(n for n in (large["note"], tiny["note"]) if n), "dataset_mb": dataset_mb,
            "peak_tiny_mb": tiny.get("peak_mem_mb"), "peak_large_mb": large.get("peak_mem_mb"),
            "data_mb": extra, "copies": extra / dataset_mb if extra is not None else None}
