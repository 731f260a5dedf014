"""Ray Data datasets for tests/test_ray_data.py (functions called on the driver once Ray is up), and
a callback that writes each rank's steps, so the test can see that every rank took the same number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.worker.callbacks.base import Callback

FEATURES = 8


def blob_rows(n: int, seed: int):
    """Two separable Gaussian blobs, with an id per row."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32) + 3.0 * labels[:, None]
    return [{"x": x[i], "label": int(labels[i]), "id": i} for i in range(n)]


def blobs(rows: int = 512):
    import ray.data

    return ray.data.from_items(blob_rows(rows, seed=0), override_num_blocks=8)


def val_blobs():
    import ray.data

    return ray.data.from_items(blob_rows(128, seed=1), override_num_blocks=2)


def not_a_dataset():
    return [1, 2, 3]


class StepsPerRank(Callback):
    """Writes ``{"rank": r, "steps": n}`` (steps this attempt took on this rank) to ``folder``."""

    def __init__(self, folder: str):
        self.folder, self.steps = Path(folder), 0

    def on_step_end(self, loop, step, result):
        self.steps += 1

    def on_fit_end(self, loop):
        self.folder.mkdir(parents=True, exist_ok=True)
        rank = loop.c.rank
        (self.folder / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "steps": self.steps}))
        return {}
