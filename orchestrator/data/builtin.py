"""The built-in datasets: loaded once on the driver into numpy arrays and shared with the
workers through Ray's object store (``memory.InMemoryData``). Each one's schema lives here too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from orchestrator.config.errors import ConfigError
from orchestrator.data import checks
from orchestrator.data.idx import check_idx, read_idx  # noqa: F401 (read_idx: part of this module's API)
from orchestrator.data.memory import CHUNK_BYTES, ChunkSource, DataBundle, InMemoryData
from orchestrator.data.module import CheckReport, DataInfo
from orchestrator.data.text import default_corpus, load_text, read_text_file, text_too_short

from orchestrator.data.schemas import (OWN_KEYS, SCHEMAS as ARRAY_SCHEMAS, TASKS, ArrayDataConfig,  # noqa: F401
                                       DataConfig, DigitsConfig, MNISTConfig, SyntheticClassificationConfig,
                                       SyntheticRegressionConfig, TextConfig, check_own_keys)
from orchestrator.data.file_schemas import FILE_SCHEMAS
from orchestrator.data.ray_data_schema import RayDataConfig

SCHEMAS = ARRAY_SCHEMAS + FILE_SCHEMAS + [RayDataConfig]


def load(cfg) -> DataBundle:
    """A built-in dataset's arrays for a config, whole in this process (tests, benchmarks)."""
    from orchestrator.components import registry
    from orchestrator.data.module import data_module

    return data_module(registry.spec(cfg, "data"), cfg.trainer.seed).load()


class ArrayData(InMemoryData):
    """Keeps the settings (a built-in's constructor runs on the driver and does nothing else)."""

    def __init__(self, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.0,
                 random_labels: bool = False, cv_folds: int = 0, cv_fold: int = 0, **settings):
        self.seed = seed
        self.split = dict(val_fraction=val_fraction, test_fraction=test_fraction, random_labels=random_labels,
                          cv_folds=cv_folds, cv_fold=cv_fold)
        self.settings = settings

    def __getattr__(self, name):
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(name)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def sample_count(self) -> Optional[int]:
        """Samples before splitting, if known without loading."""
        return self.settings.get("num_samples")

    def check(self) -> Optional[CheckReport]:
        n = self.sample_count()
        return CheckReport(sizes=checks.labelled_sizes(n, self.split)) if n is not None else None


# scikit-learn's digits: a fixed, bundled data set (tests check this against what load() returns).
DIGITS_SAMPLES = 1797


class Digits(ArrayData):
    def sample_count(self) -> int:
        return DIGITS_SAMPLES

    def load(self) -> DataBundle:
        images, y = read_digits()
        x = (images / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
        if self.image_size != 8:
            x = resize_images(x, self.image_size)
        return labelled_bundle(x, y, self.split, self.rng(), "classification", 10)


class MNIST(ArrayData):
    def check(self) -> CheckReport:
        """The files' headers (and a plain file's size): a corrupt or mismatched file fails before Ray starts."""
        folder = Path(self.path).expanduser()
        images_file, labels_file = find_file(folder, self.train_images), find_file(folder, self.train_labels)
        images, labels = check_idx(images_file, ndim=3), check_idx(labels_file, ndim=1)
        if images.shape[0] != labels.shape[0]:
            raise ConfigError(f"data.path: {images.shape[0]} images in {images_file} but {labels.shape[0]} "
                              f"labels in {labels_file}")
        return CheckReport(sizes=checks.labelled_sizes(images.shape[0], self.split))

    def load(self) -> DataBundle:
        folder = Path(self.path).expanduser()
        images = read_idx(find_file(folder, self.train_images))
        labels = read_idx(find_file(folder, self.train_labels)).astype(np.int64)
        if len(images) != len(labels):
            raise ConfigError(f"data.path: {len(images)} images but {len(labels)} labels in {folder}")
        x = (images.astype(np.float32) / 255.0)[:, None, :, :]
        return labelled_bundle(x, labels, self.split, self.rng(), "classification", int(labels.max()) + 1)


class SyntheticClassification(ArrayData):
    def load(self) -> DataBundle:
        return synthetic_classification(self, self.rng())


class SyntheticRegression(ArrayData):
    def load(self) -> DataBundle:
        rng = self.rng()
        x = rng.standard_normal(size=(self.num_samples, self.num_features), dtype=np.float32)
        weights = rng.normal(size=(self.num_features, self.num_targets)).astype(np.float32)
        noise = self.noise * rng.standard_normal(size=(self.num_samples, self.num_targets), dtype=np.float32)
        y = (x @ weights / np.sqrt(self.num_features) + noise).astype(np.float32)
        bundle = labelled_bundle(x, y, self.split, rng, "regression", None)
        bundle.info.num_targets = self.num_targets
        return bundle


class Text(ArrayData):
    def check(self) -> CheckReport:
        """Reads the text as load() will: a missing, binary, empty or too short file fails before Ray starts."""
        warnings = []
        if self.path:
            path = Path(self.path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"data.path: no such file: {self.path}")
            text, warning = read_text_file(path, self.max_chars)
            warnings += [warning] if warning else []
        else:
            text = default_corpus(self.max_chars)
        sizes = checks.text_sizes(len(text), self.block_size, self.stride or self.block_size, self.split)
        if sizes["train"] == 0:
            raise ConfigError(text_too_short(self, len(text)))
        return CheckReport(sizes=sizes, warnings=warnings)

    def load(self) -> DataBundle:
        return load_text(self)


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


def labelled_bundle(x: np.ndarray, y: np.ndarray, split: Dict, rng: np.random.Generator, task: str,
                    num_classes: Optional[int]) -> DataBundle:
    if split["cv_folds"]:
        parts = fold_indices(len(x), split["test_fraction"], split["cv_folds"], split["cv_fold"], rng)
    else:
        parts = split_indices(len(x), split["val_fraction"], split["test_fraction"], rng)
    arrays = {}
    for name, idx in parts.items():
        arrays[f"x_{name}"] = np.ascontiguousarray(x[idx])
        arrays[f"y_{name}"] = np.ascontiguousarray(y[idx])
    if split["random_labels"]:
        # Memorisation probe: labels no longer depend on inputs, so validation stays at chance.
        arrays["y_train"] = rng.permutation(arrays["y_train"])
    info = DataInfo(task=task, input_shape=tuple(x.shape[1:]), num_classes=num_classes,
                    sizes={name: len(i) for name, i in parts.items()})
    return DataBundle(info=info, arrays=arrays)


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


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)
    return resized.numpy().astype(np.float32)


def find_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"data.path: neither {name} nor {name}.gz in {folder}")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> Dict[str, int]:
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def synthetic_classification(data: "SyntheticClassification", rng: np.random.Generator) -> DataBundle:
    centres = rng.normal(size=(data.num_classes, data.num_features)).astype(np.float32)
    centres *= data.class_sep / np.sqrt(2.0)  # neighbouring centres ~class_sep noise-stds apart
    row_shape = tuple(data.sample_shape) or (data.num_features,)
    if data.split["cv_folds"]:  # folds cut one pool of samples: generate it whole
        y = rng.integers(0, data.num_classes, size=data.num_samples)
        x = gaussian_rows(centres, y, row_shape, data.seed, "pool").materialize()
        return labelled_bundle(x, y.astype(np.int64), data.split, rng, "classification", data.num_classes)
    # Samples are independent: each split is generated on its own, chunk by chunk, so even a
    # dataset of gigabytes never exists twice in memory (no split copy, no temporaries).
    arrays = {}
    sizes = split_sizes(data.num_samples, data.split["val_fraction"], data.split["test_fraction"])
    for split, size in sizes.items():
        y = rng.integers(0, data.num_classes, size=size).astype(np.int64)
        x = gaussian_rows(centres, y, row_shape, data.seed, split)
        arrays[f"x_{split}"] = x.materialize() if x.nbytes <= CHUNK_BYTES else x
        arrays[f"y_{split}"] = rng.permutation(y) if data.split["random_labels"] and split == "train" else y
    info = DataInfo(task="classification", input_shape=row_shape, num_classes=data.num_classes, sizes=sizes)
    return DataBundle(info=info, arrays=arrays)


def gaussian_rows(centres: np.ndarray, y: np.ndarray, row_shape, seed: int, split: str) -> ChunkSource:
    """Rows = the class centre + unit Gaussian noise; each chunk from its own seeded stream."""
    split_id = {"train": 0, "val": 1, "test": 2, "pool": 3}[split]

    def make_chunk(index: int, lo: int, hi: int) -> np.ndarray:
        chunk_rng = np.random.default_rng([seed, split_id, index])
        rows = chunk_rng.standard_normal(size=(hi - lo, centres.shape[1]), dtype=np.float32)
        rows += centres[y[lo:hi]]  # in place: no temporary of the chunk's size
        return rows.reshape(hi - lo, *row_shape)

    return ChunkSource(len(y), row_shape, np.float32, make_chunk)
