"""What a sharded split offers the worker: this rank's batches per epoch, its loaders, and its
stream position for checkpoints. The map-style counterpart is ``loader.MapTrain``."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch.utils.data import DataLoader

from orchestrator.data.loader import epoch_seed
from orchestrator.data.streaming import plan as P
from orchestrator.data.streaming.stream import EvalStream, ShardStream, StreamSettings


class ShardedSplit:
    """A split of shard files (Parquet, tar) and how to read them; ``len`` is its sample count."""

    def __init__(self, index: P.ShardIndex, settings: StreamSettings, shuffle: bool = True):
        self.index, self.settings, self.shuffle = index, settings, shuffle

    def __len__(self) -> int:
        return self.index.total

    def train_source(self, rank: int, world_size: int, loader_settings, seed: int) -> "StreamTrain":
        return StreamTrain(self, rank, world_size, loader_settings, seed)

    def eval_loader(self, rank: int, world_size: int, loader_settings) -> DataLoader:
        stream = EvalStream(self.index, self.settings, rank, world_size, loader_settings.batch_size)
        return _loader(stream, loader_settings, seed=0, workers=loader_settings.num_workers)


class StreamTrain:
    """This rank's training stream. Batches a rank has consumed in the epoch fix where each of its
    readers is (``plan.py``); a resume with another world size, loader worker count or batch size
    cannot continue the epoch exactly and starts it again (``resume_problem``)."""

    def __init__(self, split: ShardedSplit, rank: int, world_size: int, loader_settings, seed: int):
        self.split, self.rank, self.seed = split, rank, seed
        self.loader_settings = loader_settings
        self.layout = P.Layout(world_size, loader_settings.num_workers, loader_settings.batch_size)

    def batches_per_epoch(self) -> int:
        problem = P.layout_problem(self.split.index, self.layout)
        if problem:  # e.g. an elastic restart with fewer ranks than readers need
            from orchestrator.config.errors import ConfigError

            raise ConfigError(problem)
        return P.batches_per_rank(self.split.index, self.layout)

    def order(self, epoch: int) -> P.Order:
        return P.Order(epoch, self.seed, self.split.shuffle)

    def loader(self, epoch: int, samples_done: int, batches_done: int):
        stream = ShardStream(self.split.index, self.split.settings, self.layout, self.order(epoch), self.rank,
                             batches_done)
        return _loader(stream, self.loader_settings, epoch_seed(self.seed, self.rank, epoch), self.layout.workers)

    def resume_problem(self, recorded: Dict[str, Any]) -> Optional[str]:
        return P.resume_problem(recorded, self.layout)

    def position(self, epoch: int, batches_done: int) -> Dict[str, Any]:
        """Where every reader of every rank is: what the checkpoint records (rank 0 computes it for all)."""
        return {"world_size": self.layout.world_size, "workers": self.layout.workers,
                "batch_size": self.layout.batch_size, "batches": batches_done,
                "readers": P.positions(self.split.index, self.layout, self.order(epoch), batches_done)}


def _loader(stream, settings, seed: int, workers: int) -> DataLoader:
    """batch_size=None: the stream yields whole batches (already collated)."""
    options = {"prefetch_factor": settings.prefetch_factor} if workers and settings.prefetch_factor else {}
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=settings.pin_memory,
                      generator=torch.Generator().manual_seed(seed), **options)
