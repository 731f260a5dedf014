"""The shared part of the sharded built-in formats (Parquet, tar shards): on the driver, list the
shards and count their samples from metadata (``check``); on each worker, stream the rank's own
part of each split (``setup``). A format supplies how to count, read and describe its shards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from orchestrator.config.errors import ConfigError
from orchestrator.data.files import list_files
from orchestrator.data.module import CheckReport, DataInfo, DataModule, Splits, WorkerContext
from orchestrator.data.streaming import plan as P
from orchestrator.data.streaming.split import ShardedSplit
from orchestrator.data.streaming.stream import ShardReader, StreamSettings

# Shards whose metadata the driver reads at once (remote object stores answer many requests in parallel).
INDEX_THREADS = 16


class ShardedData(DataModule):
    suffixes: Tuple[str, ...] = ()

    def __init__(self, path: str, val_path: Optional[str] = None, test_path: Optional[str] = None,
                 val_fraction: float = 0.1, shuffle: bool = True, shuffle_block: int = 256,
                 on_bad_sample: str = "fail", max_bad_samples: int = 100, seed: int = 0, **settings):
        self.paths = {"train": path, "val": val_path, "test": test_path}
        self.val_fraction, self.shuffle, self.shuffle_block = val_fraction, shuffle, shuffle_block
        self.on_bad_sample, self.seed, self.settings = on_bad_sample, seed, settings
        self.indexes: Dict[str, P.ShardIndex] = {}
        self.warnings: List[str] = []

    # ---- what a format supplies
    def count(self, url: str) -> int:
        """Samples in one shard, from its metadata (no sample is decoded)."""
        raise NotImplementedError

    def reader(self) -> ShardReader:
        raise NotImplementedError

    def describe_data(self, splits: Dict[str, ShardedSplit]) -> DataInfo:
        """Input shape, classes, task (on a worker; may read the first sample)."""
        raise NotImplementedError

    def collate(self):
        from torch.utils.data import default_collate

        return default_collate

    # ---- driver
    def check(self) -> CheckReport:
        for split, path in self.paths.items():
            if path:
                key = "data.path" if split == "train" else f"data.{split}_path"
                self.indexes[split] = self.index(list_files(path, self.suffixes, key), key)
        if "val" not in self.indexes and self.val_fraction > 0:
            self.hold_out_validation()
        sizes = {split: index.total for split, index in self.indexes.items()}
        if not sizes["train"]:
            raise ConfigError(f"data.path: {self.paths['train']} holds no samples")
        train = self.indexes["train"]
        return CheckReport(sizes=sizes, warnings=list(self.warnings),
                           layout_problem=lambda world, workers, batch: P.layout_problem(
                               train, P.Layout(world, workers, batch)))

    def index(self, urls: List[str], key: str) -> P.ShardIndex:
        with ThreadPoolExecutor(min(INDEX_THREADS, len(urls))) as pool:
            counts = list(pool.map(lambda url: self.count_or_none(url, key), urls))
        kept = [(url, n) for url, n in zip(urls, counts) if n is not None]
        return P.ShardIndex(tuple(u for u, _ in kept), tuple(n for _, n in kept))

    def count_or_none(self, url: str, key: str) -> Optional[int]:
        try:
            return self.count(url)
        except Exception as err:  # noqa: BLE001 - an unreadable file, whatever the reader raised
            message = f"{key}: cannot read {url}: {type(err).__name__}: {err}"
            if self.on_bad_sample == "fail":
                raise ConfigError(message + " (data.on_bad_sample=skip leaves unreadable files out)") from err
            self.warnings.append(message + "; left out (data.on_bad_sample=skip)")
            return None

    def hold_out_validation(self) -> None:
        """The last shards (``val_fraction`` of them, at least one) validate, when there are two or more."""
        train = self.indexes["train"]
        if len(train) < 2:
            self.warnings.append(f"data.val_fraction: {self.paths['train']} has one shard, so no validation "
                                 "split; give data.val_path")
            return
        k = min(len(train) - 1, max(1, round(len(train) * self.val_fraction)))
        self.indexes["train"] = P.ShardIndex(train.urls[:-k], train.counts[:-k])
        self.indexes["val"] = P.ShardIndex(train.urls[-k:], train.counts[-k:])

    # ---- worker
    def setup(self, ctx: WorkerContext) -> Splits:
        settings = StreamSettings(self.reader(), self.collate(), self.shuffle_block, self.on_bad_sample)
        splits = {name: ShardedSplit(index, settings, shuffle=self.shuffle and name == "train")
                  for name, index in self.indexes.items()}
        info = self.describe_data(splits)
        info.sizes = {name: index.total for name, index in self.indexes.items()}
        return Splits(splits["train"], splits.get("val"), splits.get("test"), info)
