"""In-memory datasets: arrays loaded once on the driver, shared through Ray's object store.

Every worker on a node maps the same read-only arrays (zero copies) and gathers its batches
straight from them by index (``take``: one ``index_select`` per array and batch, no per-sample Python
calls; training epochs call it without a DataLoader, see ``loader.GatheredBatches``), which keeps the
data wait far below the step time. This is one implementation of the data
contract (``module.py``); the DataLoader, sampler and loop treat it like any other dataset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from orchestrator.data.module import DataInfo, DataModule, Splits, WorkerContext

CHUNK_BYTES = 64 * 2**20


class ChunkSource:
    """Rows produced chunk by chunk, so a large array never has to exist whole in the driver's
    heap: the driver puts each chunk in the object store and drops it (see ``object_store``)."""

    def __init__(self, num_rows: int, row_shape: Tuple[int, ...], dtype,
                 make_chunk: Callable[[int, int, int], np.ndarray]):
        self.num_rows, self.row_shape, self.dtype = num_rows, tuple(row_shape), np.dtype(dtype)
        self.make_chunk = make_chunk  # (chunk index, first row, end row) -> rows
        row_bytes = max(1, int(np.prod(self.row_shape)) * self.dtype.itemsize)
        self.rows_per_chunk = max(1, CHUNK_BYTES // row_bytes)

    def __len__(self) -> int:
        return self.num_rows

    @property
    def nbytes(self) -> int:
        return self.num_rows * int(np.prod(self.row_shape)) * self.dtype.itemsize

    def bounds(self) -> Iterator[Tuple[int, int, int]]:
        for index, lo in enumerate(range(0, self.num_rows, self.rows_per_chunk)):
            yield index, lo, min(self.num_rows, lo + self.rows_per_chunk)

    def chunks(self) -> Iterator[np.ndarray]:
        for index, lo, hi in self.bounds():
            yield self.make_chunk(index, lo, hi)

    def materialize(self) -> np.ndarray:
        out = np.empty((self.num_rows, *self.row_shape), dtype=self.dtype)
        for index, lo, hi in self.bounds():
            out[lo:hi] = self.make_chunk(index, lo, hi)
        return out


# An array, a lazy ChunkSource (driver side), or the list of chunks a worker maps from the object store.
Rows = Union[np.ndarray, ChunkSource, List[np.ndarray]]


@dataclass
class DataBundle:
    info: DataInfo
    # x_<split>, y_<split> for split in train/val/test. Text keeps one token stream in
    # "tokens" and, per split, the start offsets of its windows in x_<split> (y_<split> unused).
    arrays: Dict[str, Rows] = field(default_factory=dict)

    def num_samples(self, split: str) -> int:
        rows = self.arrays.get(f"x_{split}", ())
        return sum(len(c) for c in rows) if isinstance(rows, list) else int(len(rows))

    def materialized(self) -> "DataBundle":
        """Every array whole in memory (for use without Ray, e.g. tests)."""
        return DataBundle(self.info, {k: v.materialize() if isinstance(v, ChunkSource) else v
                                      for k, v in self.arrays.items()})


class InMemoryData(DataModule):
    """Subclasses implement ``load() -> DataBundle`` (on the driver)."""

    bundle: Optional[DataBundle] = None
    shared = None

    def load(self) -> DataBundle:
        raise NotImplementedError

    def prepare(self) -> None:
        if self.bundle is None:
            self.bundle = self.load()

    def to_workers(self) -> "InMemoryData":
        """A copy that carries object-store references instead of the arrays (a few bytes)."""
        from orchestrator.data import object_store

        self.prepare()
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.bundle, twin.shared = None, object_store.share(self.bundle)
        return twin

    def setup(self, ctx: WorkerContext) -> Splits:
        from orchestrator.data import object_store

        bundle = object_store.fetch(self.shared) if self.shared is not None else self.bundle
        if bundle is None:
            self.prepare()
            bundle = self.bundle
        return bundle_splits(bundle)


def bundle_splits(bundle: DataBundle) -> Splits:
    views = {split: split_dataset(bundle, split) if bundle.num_samples(split) else None
             for split in ("train", "val", "test")}
    return Splits(views["train"], views["val"], views["test"], info=bundle.info)


def split_dataset(bundle: DataBundle, split: str):
    if bundle.info.task == "language":
        return TextWindows(bundle.arrays["tokens"], bundle.arrays[f"x_{split}"], bundle.info.input_shape[0])
    return ArrayDataset(bundle.arrays[f"x_{split}"], bundle.arrays[f"y_{split}"])


# ----------------------------------------------------------------------------- worker side
def as_tensor(array: np.ndarray):
    import torch

    with warnings.catch_warnings():
        # Arrays from the object store are read-only and shared by the workers of a node.
        # We only ever gather from them (which copies), never write.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class ChunkedRows:
    """Rows kept in several equal chunks (a large dataset in the object store), gathered by
    global row index without ever concatenating them (which would copy the data per worker)."""

    def __init__(self, chunks: List):
        self.chunks = chunks
        self.rows_per_chunk = chunks[0].shape[0]
        self.length = sum(c.shape[0] for c in chunks)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices):
        import torch

        which = torch.div(indices, self.rows_per_chunk, rounding_mode="floor")
        offsets = indices - which * self.rows_per_chunk
        out = torch.empty((len(indices), *self.chunks[0].shape[1:]), dtype=self.chunks[0].dtype)
        for chunk in which.unique().tolist():
            selected = (which == chunk).nonzero().squeeze(1)
            out[selected] = self.chunks[chunk][offsets[selected]]
        return out


def take_rows(rows, indices):
    """Rows at ``indices`` (a tensor), copied: one ``index_select`` (~4x faster than ``rows[indices]``
    on CPU for a small batch), or the chunks' own gather."""
    return rows.index_select(0, indices) if hasattr(rows, "index_select") else rows[indices]


def rows_of(value):
    if isinstance(value, ChunkSource):
        value = value.materialize()  # without the object store (tests): whole in memory
    if isinstance(value, list):
        return ChunkedRows([as_tensor(c) for c in value]) if len(value) > 1 else as_tensor(value[0])
    return as_tensor(value)


def passthrough(batch):
    """The collate function of datasets whose ``__getitems__`` already returns a batch."""
    return batch


class ArrayDataset:
    """(x, y) rows of shared arrays as a map-style torch Dataset with a batched ``__getitems__``."""

    collate_fn = staticmethod(passthrough)

    def __init__(self, x: Rows, y: Rows):
        self.x, self.y = rows_of(x), rows_of(y)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        import torch

        idx = torch.tensor([index])
        return self.x[idx][0], self.y[idx][0]

    def __getitems__(self, indices):
        import torch

        return self.take(torch.as_tensor(indices))

    def take(self, indices):
        """The batch at ``indices`` (an int64 tensor): what the training epoch gathers directly."""
        return take_rows(self.x, indices), take_rows(self.y, indices)


class TextWindows:
    """Next-token windows of one token stream: sample i is (tokens[s:s+block], tokens[s+1:s+block+1])."""

    collate_fn = staticmethod(passthrough)

    def __init__(self, tokens: np.ndarray, starts: Rows, block: int):
        import torch

        self.tokens, self.starts = as_tensor(tokens), rows_of(starts)
        self.offsets = torch.arange(block + 1)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int):
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices):
        import torch

        return self.take(torch.as_tensor(indices))

    def take(self, indices):
        windows = self.tokens[take_rows(self.starts, indices).unsqueeze(1) + self.offsets]  # (B, block + 1)
        return windows[:, :-1], windows[:, 1:]
