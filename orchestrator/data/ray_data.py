"""``data=ray_data``: a ``ray.data.Dataset`` (the user's, with Ray's distributed reading and
preprocessing) fed to each rank through ``Dataset.streaming_split``.

Driver: the dataset function is imported before Ray starts (``check``) and called once Ray is up
(``to_workers``), which also counts the rows and describes the batches. Every gang start
(``for_attempt``) splits the dataset into one iterator per rank, with equal rows, so that every rank
takes the same number of steps and none waits at the all-reduce. Workers: ``ray_data_split.py``.

A Ray Data stream has no position to resume from (its shuffle and block order come from Ray Data's
execution), so a resume mid-epoch starts that epoch again, with an event (``RayTrain.resume_problem``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from orchestrator.components.spec import import_object
from orchestrator.config.errors import ConfigError
from orchestrator.data.module import DataInfo, DataModule, Splits, WorkerContext
from orchestrator.data.ray_data_schema import is_ray_dataset
from orchestrator.data.ray_data_split import Columns, RayEvalSplit, RayReading, RayTrainSplit


class RayDataset(DataModule):
    """Settings on construction (driver, before Ray starts); the datasets once Ray is up."""

    def __init__(self, dataset: Any, val_dataset: Any = None, seed: int = 0, **settings):
        self.sources = {"train": dataset, "val": val_dataset}
        self.seed = seed
        self.columns = Columns(tuple(settings.get("feature_columns") or ()), settings.get("label_column"))
        self.task, self.num_classes = settings.get("task", "auto"), settings.get("num_classes")
        self.reading = RayReading(settings.get("shuffle", "local"), settings.get("shuffle_buffer", 1024),
                                  settings.get("prefetch_batches", 1))
        self.datasets: Dict[str, Any] = {}
        self.rows: Dict[str, int] = {}
        self.info = DataInfo()

    # ---- driver, before Ray starts
    def check(self) -> None:
        """A typo in an import path fails here, naming the key (the function itself needs Ray)."""
        if self.sources["train"] is None:
            raise ConfigError("data.dataset: must name a function returning a ray.data.Dataset (or pass the "
                              "Dataset from Python: orchestrator.run(data=ds))")
        for split, source in self.sources.items():
            if isinstance(source, str):
                function = importable(key(split), source)
                if not callable(function):
                    raise ConfigError(f"{key(split)}: {source} is not callable (name a function returning "
                                      "a ray.data.Dataset)")
            elif source is not None and not is_ray_dataset(source) and not callable(source):
                raise ConfigError(f"{key(split)}: expected an import path or a ray.data.Dataset, got "
                                  f"{type(source).__name__}")

    # ---- driver, once Ray is up
    def to_workers(self) -> "RayDataset":
        for split, source in self.sources.items():
            if source is not None:
                self.datasets[split] = quiet(dataset_of(split, source))
                # count(): free when the source knows its rows (from_items/from_numpy, Parquet footers);
                # a pipeline that may change the row count (map_batches, filter) runs once to count.
                self.rows[split] = self.datasets[split].count()
        if not self.rows["train"]:
            raise ConfigError(f"{key('train')}: {label(self.sources['train'])} holds no rows")
        self.info = self.describe()
        return self

    def describe(self) -> DataInfo:
        """From the first row (``take_batch(1)``: reads one block): input shape, task, classes."""
        info = DataInfo(sizes=dict(self.rows))
        if self.columns.label is None:
            return info  # dict batches: the user's step and model know what they hold
        first = self.datasets["train"].take_batch(1, batch_format="numpy")
        self.columns.check_present(list(first), key("train"))
        label_kind = np.asarray(first[self.columns.label]).dtype.kind
        regression = self.task == "regression" or (self.task == "auto" and label_kind not in "iub")
        self.columns = self.columns.with_task(regression)
        used = (*self.columns.features, self.columns.label)
        x, _ = self.columns.to_batch(tensors({name: first[name] for name in used}))
        info.input_shape = tuple(x.shape[1:])
        if regression:
            info.task, info.num_targets = "regression", 1
        else:
            info.task, info.num_classes = "classification", self.num_classes or self.count_classes()
        return info

    def count_classes(self) -> int:
        """The largest label + 1: one pass over the label column (set data.num_classes to skip it)."""
        largest = self.datasets["train"].max(self.columns.label)
        return int(largest) + 1

    def for_attempt(self, world_size: int) -> "RayRankData":
        """One iterator per rank: the training rows in equal parts (``equal=True`` drops the rows that do
        not divide evenly), the validation rows all (so validation metrics are exact)."""
        train = self.datasets["train"]
        if self.reading.shuffle == "blocks":
            from ray.data import RandomSeedConfig

            # reseed_after_execution: another block order every execution, i.e. every epoch.
            train = train.randomize_block_order(seed=RandomSeedConfig(seed=self.seed, reseed_after_execution=True))
        val = self.datasets.get("val")
        return RayRankData(train.streaming_split(world_size, equal=True),
                           val.streaming_split(world_size, equal=False) if val is not None else None,
                           self.rows["train"] // world_size, self.info, (self.columns, self.reading))

    def setup(self, ctx: WorkerContext) -> Splits:
        raise RuntimeError("data=ray_data: the workers get for_attempt()'s per-rank iterators, not this module")


class RayRankData(DataModule):
    """What one gang gets: every rank's iterators (each rank takes its own) and the batch layout."""

    def __init__(self, train: List[Any], val: Optional[List[Any]], rows_per_rank: int, info: DataInfo,
                 layout: Tuple[Columns, RayReading]):
        self.train, self.val, self.rows_per_rank, self.info = train, val, rows_per_rank, info
        self.columns, self.reading = layout

    def setup(self, ctx: WorkerContext) -> Splits:
        if ctx.world_size != len(self.train):
            raise RuntimeError(f"data=ray_data: split for {len(self.train)} ranks, run on {ctx.world_size}")
        train = RayTrainSplit(self.train[ctx.rank], self.rows_per_rank, self.info.sizes["train"],
                              self.columns, self.reading)
        val = (RayEvalSplit(self.val[ctx.rank], self.info.sizes["val"], self.columns, self.reading)
               if self.val is not None else None)
        return Splits(train, val, None, self.info)


def dataset_of(split: str, source: Any):
    """Call the configured function (or take the Dataset given from Python); it must be a Dataset."""
    if is_ray_dataset(source):
        return source
    function = importable(key(split), source) if isinstance(source, str) else source
    try:
        dataset = function()
    except Exception as err:  # noqa: BLE001 - the user's function failed: say which
        raise ConfigError(f"{key(split)}: {label(source)}() raised {type(err).__name__}: {err}") from err
    if not is_ray_dataset(dataset):
        raise ConfigError(f"{key(split)}: {label(source)}() returned {type(dataset).__name__}, not a "
                          "ray.data.Dataset")
    return dataset


def quiet(dataset):
    """Ray Data's progress bars and per-execution lines would interleave with the run's own terminal
    view; they stay in Ray's logs. (Set on the dataset's context, which its executions use.)"""
    dataset.context.enable_progress_bars = False
    dataset.context.print_on_execution_start = False
    return dataset


def importable(key: str, path: str) -> Any:
    """``import_object``, its message naming this key (not ``key._target_``: the value is the path)."""
    try:
        return import_object(key, path)
    except ConfigError as err:
        raise ConfigError(str(err).replace(f"{key}._target_", key, 1)) from None


def tensors(batch: Dict[str, Any]) -> Dict[str, Any]:
    import torch

    # np.array: a copy (Ray's arrays are read-only, which torch warns about).
    return {name: torch.from_numpy(np.array(values)) for name, values in batch.items()}


def key(split: str) -> str:
    return "data.dataset" if split == "train" else f"data.{split}_dataset"


def label(source: Any) -> str:
    return source if isinstance(source, str) else getattr(source, "__qualname__", type(source).__name__)
