"""Worker side of ``data=ray_data``: this rank's ``DataIterator`` (one of ``streaming_split``'s) as the
train source and eval loader the loop expects (the interface of ``streaming/split.py``).

Each epoch is one pass of the iterator (``iter_torch_batches``, full batches only). Ray Data starts a
new execution of the dataset for every pass, once every rank has asked for its first batch.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

RESUME_PROBLEM = ("a Ray Data stream has no position to continue from (its block order and shuffle come "
                  "from Ray Data's execution)")


@dataclass(frozen=True)
class Columns:
    """Which columns make (x, y) batches; no label: the dict of tensors as Ray Data gives it."""
    features: Tuple[str, ...] = ()
    label: Optional[str] = None
    regression: bool = False

    def with_task(self, regression: bool) -> "Columns":
        return dataclasses.replace(self, regression=regression)

    def check_present(self, names: Sequence[str], key: str) -> None:
        from orchestrator.config.errors import ConfigError

        for wanted, what in [(self.label, "data.label_column")] + [(f, "data.feature_columns") for f in self.features]:
            if wanted not in names:
                raise ConfigError(f"{what}: no column {wanted!r} in {key} (columns: {', '.join(names)})")

    def to_batch(self, batch: Dict[str, Any]) -> Any:
        if self.label is None:
            return batch
        y = batch[self.label]
        return feature_tensor([batch[name] for name in self.features]), (y.float() if self.regression else y.long())


def feature_tensor(columns: Sequence[Any]):
    """One column keeps its shape (a scalar column becomes (N, 1)); floats become float32, the models'
    dtype. Several columns are flattened and concatenated as float32 features."""
    import torch

    if len(columns) == 1:
        x = columns[0]
        x = x.reshape(-1, 1) if x.dim() == 1 else x
        return x.float() if x.is_floating_point() else x
    return torch.cat([c.reshape(len(c), -1).float() for c in columns], dim=1)


@dataclass(frozen=True)
class RayReading:
    shuffle: str = "local"       # none | local | blocks (ray_data_schema.SHUFFLES)
    shuffle_buffer: int = 1024
    prefetch_batches: int = 1


def torch_batches(iterator: Any, settings: Any, reading: RayReading, columns: Columns, drop_last: bool,
                  shuffle_seed: Optional[int] = None) -> Iterator[Any]:
    """One pass of ``iterator`` as the loop's batches. A ``data.collate_fn`` gets Ray Data's numpy
    batch and returns the batch itself (no column mapping). ``device="cpu"``: the loop moves batches."""
    shuffle = {} if shuffle_seed is None or reading.shuffle == "none" else dict(
        local_shuffle_buffer_size=reading.shuffle_buffer, local_shuffle_seed=shuffle_seed)
    batches = iterator.iter_torch_batches(batch_size=settings.batch_size, drop_last=drop_last, device="cpu",
                                          prefetch_batches=reading.prefetch_batches,
                                          pin_memory=settings.pin_memory, collate_fn=settings.collate_fn,
                                          **shuffle)
    if settings.collate_fn is not None:
        return iter(batches)
    return (columns.to_batch(batch) for batch in batches)


class RayTrainSplit:
    """This rank's training iterator; ``len`` is the whole split's row count (for messages)."""

    def __init__(self, iterator: Any, rows_per_rank: int, total_rows: int, columns: Columns, reading: RayReading):
        self.iterator, self.rows_per_rank, self.total_rows = iterator, rows_per_rank, total_rows
        self.columns, self.reading = columns, reading

    def __len__(self) -> int:
        return self.total_rows

    def train_source(self, rank: int, world_size: int, loader_settings: Any, seed: int) -> "RayTrain":
        return RayTrain(self, rank, loader_settings, seed)


class RayTrain:
    def __init__(self, split: RayTrainSplit, rank: int, loader_settings: Any, seed: int):
        self.split, self.rank, self.settings, self.seed = split, rank, loader_settings, seed

    def batches_per_epoch(self) -> int:
        return self.split.rows_per_rank // self.settings.batch_size

    def loader(self, epoch: int, samples_done: int, batches_done: int) -> Iterator[Any]:
        """The epoch's pass. ``batches_done`` is 0 except if the loop resumed mid-epoch although
        ``resume_problem`` said it cannot: those batches are then read and dropped."""
        seed = hash((self.seed, self.rank, epoch)) % 2**32  # another local shuffle every epoch and rank
        batches = torch_batches(self.split.iterator, self.settings, self.split.reading, self.split.columns,
                                drop_last=True, shuffle_seed=seed)
        return itertools.islice(batches, batches_done, None)

    def resume_problem(self, recorded: Dict[str, Any]) -> Optional[str]:
        return RESUME_PROBLEM

    def position(self, epoch: int, batches_done: int) -> Dict[str, Any]:
        return {"ray_data": True, "batches": batches_done}


class RayEvalSplit:
    """This rank's validation iterator (``streaming_split(equal=False)``: every row once across ranks)."""

    def __init__(self, iterator: Any, total_rows: int, columns: Columns, reading: RayReading):
        self.iterator, self.total_rows, self.columns, self.reading = iterator, total_rows, columns, reading

    def __len__(self) -> int:
        return self.total_rows

    def eval_loader(self, rank: int, world_size: int, loader_settings: Any) -> Iterator[Any]:
        return torch_batches(self.iterator, loader_settings, self.reading, self.columns, drop_last=False)
