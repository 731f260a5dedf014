"""The built-in datasets' schemas (typed, checked where they are defined) and the data section's own
keys. The datasets themselves are in ``builtin.py``; each schema's ``_target_`` names its class there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from orchestrator.config.errors import MISSING, require


# Settings of the data section the orchestrator applies itself (how each rank loads its batches),
# not arguments of the dataset.
OWN_KEYS = ("batch_size", "num_workers", "pin_memory", "prefetch_factor", "persistent_workers", "collate_fn")


@dataclass
class DataConfig:
    _target_: str = MISSING
    name: str = "data"
    # Per-worker batch size; the global batch is batch_size * num_workers * accumulate_grad_batches.
    batch_size: int = 64
    # DataLoader worker processes per rank (0: load in the training process, best for in-memory data).
    num_workers: int = 0
    # Page-locked host memory for faster, asynchronous copies to the GPU (null: on when the worker has a GPU).
    pin_memory: Optional[bool] = None
    # Batches each DataLoader worker process loads ahead (null: torch's default, 2).
    prefetch_factor: Optional[int] = None
    # Keep DataLoader worker processes between epochs.
    persistent_workers: bool = False
    # Import path of a collate function for the DataLoader (null: the dataset's own or torch's default).
    collate_fn: Optional[str] = None

    def __post_init__(self):
        check_own_keys(vars(self))


def check_own_keys(node) -> None:
    require(isinstance(node.get("batch_size", 64), int) and node.get("batch_size", 64) > 0, "data.batch_size",
            "must be > 0", node.get("batch_size"))
    require(isinstance(node.get("num_workers", 0), int) and node.get("num_workers", 0) >= 0, "data.num_workers",
            "must be >= 0", node.get("num_workers"))
    prefetch = node.get("prefetch_factor")
    require(prefetch is None or (isinstance(prefetch, int) and prefetch >= 1), "data.prefetch_factor",
            "must be >= 1 or null", prefetch)
    require(prefetch is None or node.get("num_workers", 0) > 0, "data.prefetch_factor",
            "needs data.num_workers > 0 (it is per DataLoader worker process)", prefetch)


@dataclass
class ArrayDataConfig(DataConfig):
    """Settings every built-in in-memory dataset shares."""
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    # Replace training labels by a random permutation of them (a memorisation probe).
    random_labels: bool = False
    # k-fold cross-validation: with cv_folds=k > 1, validation is fold cv_fold of the non-test data
    # (data.val_fraction is then unused). Sweep cv_fold over 0..k-1 (search=kfold does).
    cv_folds: int = 0
    cv_fold: int = 0

    def __post_init__(self):
        super().__post_init__()
        require(self.cv_folds == 0 or self.cv_folds >= 2, "data.cv_folds", "must be 0 (off) or >= 2",
                self.cv_folds)
        require(0 <= self.cv_fold < max(self.cv_folds, 1), "data.cv_fold",
                f"must be in [0, data.cv_folds={self.cv_folds})", self.cv_fold)
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)", self.val_fraction)
        require(0.0 <= self.test_fraction < 1.0, "data.test_fraction", "must be in [0, 1)", self.test_fraction)
        require(self.val_fraction + self.test_fraction < 1.0, "data.test_fraction",
                f"plus data.val_fraction={self.val_fraction} must leave training data", self.test_fraction)


@dataclass
class DigitsConfig(ArrayDataConfig):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline)."""
    _target_: str = "orchestrator.data.builtin.Digits"
    name: str = "digits"
    # Resize the 8x8 images (bilinear), e.g. 28 to feed a 784-input MLP.
    image_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        require(self.image_size >= 8, "data.image_size", "must be >= 8", self.image_size)


@dataclass
class MNISTConfig(ArrayDataConfig):
    """MNIST-format IDX files (optionally gzipped) in a local folder."""
    _target_: str = "orchestrator.data.builtin.MNIST"
    name: str = "mnist"
    path: str = MISSING
    train_images: str = "train-images-idx3-ubyte"
    train_labels: str = "train-labels-idx1-ubyte"


@dataclass
class SyntheticClassificationConfig(ArrayDataConfig):
    _target_: str = "orchestrator.data.builtin.SyntheticClassification"
    name: str = "synthetic_classification"
    num_samples: int = 4096
    num_features: int = 32
    num_classes: int = 4
    # Distance between class centres in units of the noise's standard deviation.
    class_sep: float = 2.0
    # Shape each sample is reshaped to, e.g. [3, 32, 32] for a CNN; empty keeps [num_features].
    sample_shape: List[int] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        require(self.num_samples > 1, "data.num_samples", "must be > 1", self.num_samples)
        require(self.num_features > 0, "data.num_features", "must be > 0", self.num_features)
        require(self.num_classes >= 2, "data.num_classes", "must be >= 2", self.num_classes)
        if self.sample_shape:
            require(int(np.prod(self.sample_shape)) == self.num_features, "data.sample_shape",
                    f"must hold data.num_features={self.num_features} values", self.sample_shape)


@dataclass
class SyntheticRegressionConfig(ArrayDataConfig):
    _target_: str = "orchestrator.data.builtin.SyntheticRegression"
    name: str = "synthetic_regression"
    num_samples: int = 4096
    num_features: int = 16
    num_targets: int = 1
    noise: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.num_samples > 1, "data.num_samples", "must be > 1", self.num_samples)
        require(self.num_features > 0, "data.num_features", "must be > 0", self.num_features)
        require(self.num_targets > 0, "data.num_targets", "must be > 0", self.num_targets)
        require(self.noise >= 0, "data.noise", "must be >= 0", self.noise)


@dataclass
class TextConfig(ArrayDataConfig):
    """Characters of a text file; by default Python's own standard-library sources (always offline)."""
    _target_: str = "orchestrator.data.builtin.Text"
    name: str = "text"
    path: Optional[str] = None
    max_chars: int = 1_000_000
    block_size: int = 64
    # Distance between the starts of consecutive training windows (block_size: no overlap).
    stride: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        require(self.max_chars > 0, "data.max_chars", "must be > 0", self.max_chars)
        require(self.block_size > 1, "data.block_size", "must be > 1", self.block_size)
        require(self.stride is None or self.stride > 0, "data.stride", "must be > 0", self.stride)


SCHEMAS = [DigitsConfig, MNISTConfig, SyntheticClassificationConfig, SyntheticRegressionConfig, TextConfig]
# What each built-in is for (checked against the model and loss on the driver).
# None: known only once the workers see the data (the Ray Data path).
TASKS = {"text": "language", "synthetic_regression": "regression", "ray_data": None}
