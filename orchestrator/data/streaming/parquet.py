"""``data=parquet``: Parquet tables (pyarrow), one row per sample. The driver reads only each file's
footer (row counts, the label's statistics); each worker reads its own files one row group at a
time. ``data.label`` names the label column; ``data.features`` the feature columns (default: all
the others), a list-valued column being one feature vector."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from orchestrator.data.files import open_file
from orchestrator.data.module import DataInfo
from orchestrator.data.streaming.module import ShardedData

_INDEX_LOCK = threading.Lock()  # the driver reads footers in threads (module.INDEX_THREADS)


class ParquetRows:
    """The reader: rows of ``features`` (float32, concatenated) and ``label``, from row ``start`` on."""

    def __init__(self, label: str, features: Sequence[str], regression: bool):
        self.label, self.features, self.regression = label, list(features), regression

    def read(self, url: str, start: int) -> Iterator[Any]:
        import pyarrow.parquet as pq

        with open_file(url) as handle:
            table_file = pq.ParquetFile(handle)
            for group in range(table_file.num_row_groups):
                rows = table_file.metadata.row_group(group).num_rows
                if start >= rows:  # skipped without reading it
                    start -= rows
                    continue
                x, y = self.arrays(table_file.read_row_group(group, columns=self.features + [self.label]))
                for i in range(start, rows):
                    yield x[i], y[i]
                start = 0

    def arrays(self, table) -> tuple:
        columns = [feature_matrix(table.column(name)) for name in self.features]
        x = np.concatenate(columns, axis=1).astype(np.float32, copy=False)
        y = table.column(self.label).to_numpy()
        return x, (y.astype(np.float32) if self.regression else y.astype(np.int64))

    def decode(self, raw: Any) -> Any:
        return raw  # numpy rows; stack_rows makes each batch's tensors at once (not two per sample)

    def describe(self, url: str, raw: Any) -> str:
        return url


def stack_rows(rows: List[tuple]) -> tuple:
    import torch

    return torch.from_numpy(np.stack([x for x, _ in rows])), torch.from_numpy(np.array([y for _, y in rows]))


def feature_matrix(column) -> np.ndarray:
    """(rows, width): a numeric column is one feature, a list column (equal lengths) several."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
            pa.types.is_fixed_size_list(column.type):
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False).reshape(-1, 1)


class Parquet(ShardedData):
    suffixes = (".parquet", ".pq")

    def __init__(self, path: str, label: str = "label", features: Optional[List[str]] = None,
                 task: str = "auto", **settings):
        super().__init__(path, **settings)
        self.label, self.features, self.task = label, list(features or []), task
        self.label_max: Optional[int] = None

    def count(self, url: str) -> int:
        import pyarrow.parquet as pq

        with open_file(url) as handle:
            metadata = pq.read_metadata(handle)
        with _INDEX_LOCK:
            self.check_columns(metadata.schema.to_arrow_schema().names, url)
            self.note_label_range(metadata)
        return metadata.num_rows

    def check_columns(self, names: Sequence[str], url: str) -> None:
        from orchestrator.config.errors import ConfigError

        if self.label not in names:
            raise ConfigError(f"data.label: no column {self.label!r} in {url} (columns: {', '.join(names)})")
        missing = [f for f in self.features if f not in names]
        if missing:
            raise ConfigError(f"data.features: no column {missing[0]!r} in {url} (columns: {', '.join(names)})")
        if not self.features:
            self.features = [n for n in names if n != self.label]

    def note_label_range(self, metadata) -> None:
        """The largest integer label, from the row groups' statistics (so classes need no scan)."""
        column = metadata.schema.to_arrow_schema().names.index(self.label)
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max and isinstance(stats.max, (int, np.integer)):
                self.label_max = max(self.label_max or 0, int(stats.max))

    def is_regression(self) -> bool:
        return self.task == "regression" or (self.task == "auto" and self.label_max is None)

    def collate(self):
        return stack_rows

    def reader(self) -> ParquetRows:
        return ParquetRows(self.label, self.features, self.is_regression())

    def describe_data(self, splits: Dict) -> DataInfo:
        first = next(self.reader().read(splits["train"].index.urls[0], 0))
        if self.is_regression():
            return DataInfo(task="regression", input_shape=tuple(first[0].shape), num_targets=1)
        return DataInfo(task="classification", input_shape=tuple(first[0].shape), num_classes=self.label_max + 1)
