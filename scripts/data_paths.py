"""Step-time cost of a user's per-sample Dataset read through the DataLoader against the built-in
shared-memory path (object store, one gather per batch), on the digits CNN, 2 workers.

    python scripts/data_paths.py --reps 3 --epochs 6

Each repetition runs every variant once, interleaved (this machine is noisy); prints a table of
medians: steady samples/s, step time, data wait (share of the step) and the ratio to the shared path.
"""

from __future__ import annotations

import argparse
import os
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

BASE = ["model=cnn", "data.batch_size=32", "checkpoint.every_epoch=false",
        "stopping.overfitting.enabled=false", "trainer.log_every_n_steps=10"]


class PerSampleDigits(Dataset):
    """What a user typically writes: one sample per __getitem__, collated by torch's default_collate."""

    num_classes = 10  # tells the orchestrator the model's output size

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def per_sample_digits(seed: int):
    """The same split of the same digits as data=digits, as per-sample datasets (built on each worker)."""
    from orchestrator.data.builtin import Digits

    bundle = Digits(seed=seed, image_size=8).load()
    a = bundle.arrays
    return {"train": PerSampleDigits(a["x_train"], a["y_train"]), "val": PerSampleDigits(a["x_val"], a["y_val"])}


VARIANTS = {
    "shared memory (data=digits)": [],
    "DataLoader, per-sample, num_workers=0": ["data=custom", "data._target_=data_paths.per_sample_digits"],
    "DataLoader, per-sample, num_workers=2": ["data=custom", "data._target_=data_paths.per_sample_digits",
                                              "data.num_workers=2", "data.persistent_workers=true"],
}


def measure(overrides, epochs: int) -> dict:
    import orchestrator

    with tempfile.TemporaryDirectory() as run_dir:
        result = orchestrator.run([*BASE, f"trainer.max_epochs={epochs}", *overrides], run_dir=run_dir,
                                  show_progress=False)
    timing = result.summary["timing"]
    return {"samples_per_sec": timing.get("steady_samples_per_sec"), "data_pct": timing.get("data_pct"),
            "step_ms": 1000 * 64 / timing["steady_samples_per_sec"] if timing.get("steady_samples_per_sec") else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="write the raw numbers here (JSON)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, as our embedded Ray does
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=4, include_dashboard=False, logging_level="warning")
    raw = {name: [] for name in VARIANTS}
    for rep in range(args.reps):
        for name, overrides in VARIANTS.items():
            raw[name].append(measure(overrides, args.epochs))
            print(f"rep {rep}: {name}: {raw[name][-1]}", flush=True)
    ray.shutdown()
    base = statistics.median(r["samples_per_sec"] for r in raw["shared memory (data=digits)"])
    print("\n| data path | samples/s (median) | ms per step (global batch 64) | data wait % | vs shared |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in raw.items():
        sps = statistics.median(r["samples_per_sec"] for r in runs)
        wait = statistics.median(r["data_pct"] or 0.0 for r in runs)
        print(f"| {name} | {sps:,.0f} | {1000 * 64 / sps:.2f} | {wait:.1f} | {sps / base:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import data_paths from here
    main()
