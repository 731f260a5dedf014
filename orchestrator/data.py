"""Datasets, loaded once on the driver into numpy arrays.

The driver puts the resulting ``DataBundle`` into Ray's object store once;
every worker maps the same read-only arrays (zero-copy on the same node)
instead of reading or generating the data again. Nothing here imports Ray.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from orchestrator import config as C


@dataclass
class DataSpec:
    """What a model and a loss need to know about the data."""
    task: str                      # "classification" | "regression" | "language"
    input_shape: Tuple[int, ...]   # one sample, without the batch dimension
    num_outputs: int               # logits, regression targets, or vocabulary size
    num_classes: Optional[int]     # None for regression
    sizes: Dict[str, int]          # samples (or windows) per split
    vocabulary: Optional[List[str]] = None  # characters, for text


CHUNK_BYTES = 64 * 2**20


class ChunkSource:
    """Rows produced chunk by chunk, so a large array never has to exist whole in the driver's
    heap: the driver puts each chunk in the object store and drops it (see ``object_store``)."""

    def __init__(self, num_rows: int, row_shape: Tuple[int, ...], dtype, make_chunk: Callable[[int, int, int], np.ndarray]):
        self.num_rows, self.row_shape, self.dtype = num_rows, tuple(row_shape), np.dtype(dtype)
        self.make_chunk = make_chunk  # (chunk index, first row, end row) -> rows
        row_bytes = max(1, int(np.prod(self.row_shape)) * self.dtype.itemsize)
        self.rows_per_chunk = max(1, CHUNK_BYTES // row_bytes)

    def __len__(self) -> int:
        return self.num_rows

    @property
    def nbytes(self) -> int:
        return self.num_rows * int(np.prod(self.row_shape)) * self.dtype.itemsize

    def chunks(self) -> Iterator[np.ndarray]:
        for index, lo in enumerate(range(0, self.num_rows, self.rows_per_chunk)):
            yield self.make_chunk(index, lo, min(self.num_rows, lo + self.rows_per_chunk))

    def materialize(self) -> np.ndarray:
        out = np.empty((self.num_rows, *self.row_shape), dtype=self.dtype)
        for index, lo in enumerate(range(0, self.num_rows, self.rows_per_chunk)):
            hi = min(self.num_rows, lo + self.rows_per_chunk)
            out[lo:hi] = self.make_chunk(index, lo, hi)
        return out


# An array, a lazy ChunkSource (driver side), or the list of chunks a worker maps from the object store.
Rows = Union[np.ndarray, ChunkSource, List[np.ndarray]]


@dataclass
class DataBundle:
    spec: DataSpec
    # x_<split>, y_<split> for split in train/val/test. Text keeps one token stream in
    # "tokens" and, per split, the start offsets of its windows in x_<split> (y_<split> unused).
    arrays: Dict[str, Rows] = field(default_factory=dict)

    def num_samples(self, split: str) -> int:
        rows = self.arrays.get(f"x_{split}", ())
        return sum(len(c) for c in rows) if isinstance(rows, list) else int(len(rows))

    def materialized(self) -> "DataBundle":
        """Every array whole in memory (for use without Ray, e.g. tests)."""
        return DataBundle(self.spec, {k: v.materialize() if isinstance(v, ChunkSource) else v
                                      for k, v in self.arrays.items()})


def check_sources(cfg: C.Config) -> None:
    """Fail fast (before Ray starts) when a data file the config names does not exist."""
    data = cfg.data
    if data.name == "mnist":
        folder = Path(data.path).expanduser()
        find_file(folder, data.train_images)
        find_file(folder, data.train_labels)
    if data.name == "text" and data.path and not Path(data.path).expanduser().is_file():
        raise FileNotFoundError(f"data.path: no such file: {data.path}")


def load(cfg: C.Config) -> DataBundle:
    loader = LOADERS[cfg.data.name]
    return loader(cfg.data, np.random.default_rng(cfg.trainer.seed), cfg)


# ----------------------------------------------------------------------------- splitting
def split_indices(n: int, val_fraction: float, test_fraction: float,
                  rng: np.random.Generator) -> Dict[str, np.ndarray]:
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def fold_indices(n: int, test_fraction: float, folds: int, fold: int,
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """k-fold: the test split is held out first (the same for every fold), then the rest is cut into
    ``folds`` parts; part ``fold`` validates, the others train."""
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    rest = order[n_test:]
    parts = np.array_split(rest, folds)
    train = np.concatenate([p for i, p in enumerate(parts) if i != fold])
    return {"test": order[:n_test], "val": parts[fold], "train": train}


def labelled_bundle(x: np.ndarray, y: np.ndarray, data: C.DataConfig, rng: np.random.Generator,
                    task: str, num_outputs: int, num_classes: Optional[int]) -> DataBundle:
    if data.cv_folds:
        parts = fold_indices(len(x), data.test_fraction, data.cv_folds, data.cv_fold, rng)
    else:
        parts = split_indices(len(x), data.val_fraction, data.test_fraction, rng)
    arrays = {}
    for split, idx in parts.items():
        arrays[f"x_{split}"] = np.ascontiguousarray(x[idx])
        arrays[f"y_{split}"] = np.ascontiguousarray(y[idx])
    if data.random_labels:
        # Memorisation probe: labels no longer depend on inputs, so validation stays at chance.
        arrays["y_train"] = rng.permutation(arrays["y_train"])
    spec = DataSpec(task=task, input_shape=tuple(x.shape[1:]), num_outputs=num_outputs,
                    num_classes=num_classes, sizes={s: len(i) for s, i in parts.items()})
    return DataBundle(spec=spec, arrays=arrays)


def classification_outputs(num_classes: int, cfg: C.Config) -> int:
    # Binary cross-entropy takes a single logit.
    return 1 if C.resolved_loss(cfg) == "bce" else num_classes


# ----------------------------------------------------------------------------- loaders
def read_digits() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (images (N, 8, 8) in 0..16, labels)."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.exists():
        # The file sklearn.datasets.load_digits parses; reading it directly skips ~1-2 s of
        # importing scikit-learn on the start-up path.
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def load_digits(data: C.DigitsConfig, rng, cfg) -> DataBundle:
    images, y = read_digits()
    x = (images / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    if data.image_size != 8:
        x = resize_images(x, data.image_size)
    return labelled_bundle(x, y, data, rng, "classification", classification_outputs(10, cfg), 10)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)
    return resized.numpy().astype(np.float32)


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise ValueError(f"{path} is not an IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim).reshape(shape)


def find_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"data.path: neither {name} nor {name}.gz in {folder}")


def load_mnist(data: C.MNISTConfig, rng, cfg) -> DataBundle:
    folder = Path(data.path).expanduser()
    images = read_idx(find_file(folder, data.train_images))
    labels = read_idx(find_file(folder, data.train_labels)).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"data.path: {len(images)} images but {len(labels)} labels in {folder}")
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    num_classes = int(labels.max()) + 1
    return labelled_bundle(x, labels, data, rng, "classification", classification_outputs(num_classes, cfg),
                           num_classes)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> Dict[str, int]:
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def load_synthetic_classification(data: C.SyntheticClassificationConfig, rng, cfg) -> DataBundle:
    centres = rng.normal(size=(data.num_classes, data.num_features)).astype(np.float32)
    centres *= data.class_sep / np.sqrt(2.0)  # neighbouring centres ~class_sep noise-stds apart
    row_shape = tuple(data.sample_shape) or (data.num_features,)
    outputs = classification_outputs(data.num_classes, cfg)
    if data.cv_folds:  # folds cut one pool of samples: generate it whole
        y = rng.integers(0, data.num_classes, size=data.num_samples)
        x = gaussian_rows(centres, y, row_shape, cfg.trainer.seed, "pool").materialize()
        return labelled_bundle(x, y.astype(np.int64), data, rng, "classification", outputs, data.num_classes)
    # Samples are independent: each split is generated on its own, chunk by chunk, so even a
    # dataset of gigabytes never exists twice in memory (no split copy, no temporaries).
    arrays, sizes = {}, split_sizes(data.num_samples, data.val_fraction, data.test_fraction)
    for split, size in sizes.items():
        y = rng.integers(0, data.num_classes, size=size).astype(np.int64)
        x = gaussian_rows(centres, y, row_shape, cfg.trainer.seed, split)
        arrays[f"x_{split}"] = x.materialize() if x.nbytes <= CHUNK_BYTES else x
        arrays[f"y_{split}"] = rng.permutation(y) if data.random_labels and split == "train" else y
    spec = DataSpec(task="classification", input_shape=row_shape, num_outputs=outputs,
                    num_classes=data.num_classes, sizes=sizes)
    return DataBundle(spec=spec, arrays=arrays)


def gaussian_rows(centres: np.ndarray, y: np.ndarray, row_shape, seed: int, split: str) -> ChunkSource:
    """Rows = the class centre + unit Gaussian noise; each chunk from its own seeded stream."""
    split_id = {"train": 0, "val": 1, "test": 2, "pool": 3}[split]

    def make_chunk(index: int, lo: int, hi: int) -> np.ndarray:
        chunk_rng = np.random.default_rng([seed, split_id, index])
        rows = chunk_rng.standard_normal(size=(hi - lo, centres.shape[1]), dtype=np.float32)
        rows += centres[y[lo:hi]]  # in place: no temporary of the chunk's size
        return rows.reshape(hi - lo, *row_shape)

    return ChunkSource(len(y), row_shape, np.float32, make_chunk)


def load_synthetic_regression(data: C.SyntheticRegressionConfig, rng, cfg) -> DataBundle:
    x = rng.standard_normal(size=(data.num_samples, data.num_features), dtype=np.float32)
    weights = rng.normal(size=(data.num_features, data.num_targets)).astype(np.float32)
    noise = data.noise * rng.standard_normal(size=(data.num_samples, data.num_targets), dtype=np.float32)
    y = (x @ weights / np.sqrt(data.num_features) + noise).astype(np.float32)
    return labelled_bundle(x, y, data, rng, "regression", data.num_targets, None)


def default_corpus(max_chars: int) -> str:
    """Python's own standard-library sources: a text corpus present on every machine with Python."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def load_text(data: C.TextConfig, rng, cfg) -> DataBundle:
    if data.path:
        text = Path(data.path).expanduser().read_text(encoding="utf-8", errors="replace")[:data.max_chars]
    else:
        text = default_corpus(data.max_chars)
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab_codes, tokens = np.unique(codepoints, return_inverse=True)
    tokens = tokens.astype(np.int64)
    block, stride = data.block_size, data.stride or data.block_size
    # Contiguous splits (as in nanoGPT), so validation text is never seen in training.
    n = len(tokens)
    n_test, n_val = int(n * data.test_fraction), int(n * data.val_fraction)
    bounds = {"train": (0, n - n_val - n_test), "val": (n - n_val - n_test, n - n_test), "test": (n - n_test, n)}
    arrays = {"tokens": tokens}
    sizes = {}
    for split, (lo, hi) in bounds.items():
        # A window needs block + 1 tokens: inputs and the next-token targets.
        starts = np.arange(lo, max(lo, hi - block), stride, dtype=np.int64)  # s + block + 1 <= hi
        arrays[f"x_{split}"] = starts
        arrays[f"y_{split}"] = starts
        sizes[split] = len(starts)
    if sizes["train"] == 0:
        raise ValueError(f"data: the text has {n} characters, too few for data.block_size={block}")
    vocabulary = [chr(c) for c in vocab_codes]
    spec = DataSpec(task="language", input_shape=(block,), num_outputs=len(vocabulary), num_classes=len(vocabulary),
                    sizes=sizes, vocabulary=vocabulary)
    return DataBundle(spec=spec, arrays=arrays)


LOADERS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "synthetic_classification": load_synthetic_classification,
    "synthetic_regression": load_synthetic_regression,
    "text": load_text,
}
