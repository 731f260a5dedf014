"""Worker side of the data: this rank's shard, in batches, resumable mid-epoch.

Batches are gathered straight from the shared in-memory arrays by index (no
per-sample Python calls, no DataLoader worker processes): for in-memory data
this is the cheapest way to keep the data wait far below the step time.
"""

from __future__ import annotations

import warnings
from typing import Iterator, List, Tuple

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from orchestrator.data import ChunkSource, DataBundle


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (same shuffle, same ``set_epoch``) that can start part-way into an epoch.

    Positions are counted in the epoch's *global* order, which every rank
    derives from ``seed + epoch``. After ``b`` batches of ``B`` samples on each
    of ``W`` ranks, the first ``b * B * W`` positions have been used, whatever
    ``W`` was; so a resumed run neither repeats nor skips samples, even if it
    resumes with a different number of workers.
    """

    def __init__(self, num_samples: int, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0):
        # drop_last: every rank gets the same number of samples, hence the same number of steps.
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, consumed: int) -> None:
        """Skip the first ``consumed`` positions of the epoch's global order."""
        self.start = consumed

    def global_order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(len(self.dataset), generator=g)
        return torch.arange(len(self.dataset))

    def __iter__(self) -> Iterator[int]:
        return iter(self.local_indices().tolist())

    def local_indices(self) -> torch.Tensor:
        remaining = self.global_order()[self.start:]
        usable = len(remaining) - len(remaining) % self.num_replicas
        return remaining[self.rank:usable:self.num_replicas]

    def __len__(self) -> int:
        return (len(self.dataset) - self.start) // self.num_replicas


def as_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        # Arrays from the object store are read-only and shared by the workers of a node.
        # We only ever gather from them (which copies), never write.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class ChunkedRows:
    """Rows kept in several equal chunks (a large dataset in the object store), gathered by
    global row index without ever concatenating them (which would copy the data per worker)."""

    def __init__(self, chunks: List[torch.Tensor]):
        self.chunks = chunks
        self.rows_per_chunk = chunks[0].shape[0]
        self.length = sum(c.shape[0] for c in chunks)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        which = torch.div(indices, self.rows_per_chunk, rounding_mode="floor")
        offsets = indices - which * self.rows_per_chunk
        out = torch.empty((len(indices), *self.chunks[0].shape[1:]), dtype=self.chunks[0].dtype)
        for chunk in which.unique().tolist():
            selected = (which == chunk).nonzero().squeeze(1)
            out[selected] = self.chunks[chunk][offsets[selected]]
        return out


def rows_of(value) -> "torch.Tensor | ChunkedRows":
    if isinstance(value, ChunkSource):
        value = value.materialize()  # without the object store (tests): whole in memory
    if isinstance(value, list):
        return ChunkedRows([as_tensor(c) for c in value]) if len(value) > 1 else as_tensor(value[0])
    return as_tensor(value)


class SplitView:
    """One split (train/val/test) of a DataBundle as tensors; ``batch(indices)`` gathers samples."""

    def __init__(self, bundle: DataBundle, split: str):
        self.task = bundle.spec.task
        self.x = rows_of(bundle.arrays[f"x_{split}"])
        self.y = rows_of(bundle.arrays[f"y_{split}"])
        if self.task == "language":
            self.tokens = as_tensor(bundle.arrays["tokens"])
            self.offsets = torch.arange(bundle.spec.input_shape[0] + 1)

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.task == "language":
            windows = self.tokens[self.x[indices].unsqueeze(1) + self.offsets]  # (B, block + 1)
            return windows[:, :-1], windows[:, 1:]
        return self.x[indices], self.y[indices]


def train_batches(view: SplitView, sampler: ResumableDistributedSampler,
                  batch_size: int) -> Iterator[torch.Tensor]:
    """Index batches of this rank's shard; a last incomplete batch is dropped (same step count on every rank)."""
    local = sampler.local_indices()
    for i in range(len(local) // batch_size):
        yield local[i * batch_size:(i + 1) * batch_size]


def eval_batches(num_samples: int, rank: int, world_size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Every sample exactly once across ranks (strided shards, no padding), so reduced metrics are exact."""
    # max(): a rank past the last sample (fewer samples than ranks) gets an empty shard, not an error.
    local = torch.arange(rank, max(rank, num_samples), world_size)
    for i in range(0, len(local), batch_size):
        yield local[i:i + batch_size]


def steps_per_epoch(num_train: int, world_size: int, batch_size: int, accumulate: int) -> int:
    per_rank_batches = (num_train // world_size) // batch_size
    return per_rank_batches // accumulate
