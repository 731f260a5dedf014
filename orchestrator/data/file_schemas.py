"""Schemas of the built-in file formats that each worker reads itself (``image_folder``, ``parquet``,
``webdataset``): typed, checked where they are defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from orchestrator.config.errors import MISSING, require, require_choice
from orchestrator.data.bad_samples import POLICIES
from orchestrator.data.schemas import DataConfig


@dataclass
class FileDataConfig(DataConfig):
    # A local folder, a file, a glob, or any fsspec URL (s3://, gs://, ... with its fsspec package).
    path: str = MISSING
    # A sample (or file) that cannot be read: "fail" naming the file, or "skip" it and count the skips.
    on_bad_sample: str = "fail"
    # With on_bad_sample=skip: fail once a rank has skipped more than this many samples.
    max_bad_samples: int = 100

    def __post_init__(self):
        super().__post_init__()
        require_choice("data.on_bad_sample", self.on_bad_sample, set(POLICIES))
        require(self.max_bad_samples >= 0, "data.max_bad_samples", "must be >= 0", self.max_bad_samples)
        require(bool(self.path) and self.path != MISSING, "data.path", "must name a folder or URL", self.path)


def check_image_settings(image_size: Optional[int], channels: Optional[int]) -> None:
    require(image_size is None or image_size >= 1, "data.image_size", "must be >= 1 or null", image_size)
    require(channels in (None, 1, 3), "data.channels", "must be 1, 3 or null (as the first image)", channels)


@dataclass
class ImageFolderConfig(FileDataConfig):
    """A folder with one sub-folder of images per class (optionally inside train/val/test folders)."""
    _target_: str = "orchestrator.data.image_folder.ImageFolder"
    name: str = "image_folder"
    # Resize every image to image_size x image_size (null: the first image's width).
    image_size: Optional[int] = None
    # 1 (grey) or 3 (RGB); null: as the first image.
    channels: Optional[int] = None
    # Without train/val folders: this share of the files validates.
    val_fraction: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        check_image_settings(self.image_size, self.channels)
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)", self.val_fraction)


@dataclass
class ShardedDataConfig(FileDataConfig):
    """Shard files each rank streams its own part of (rank r of N reads shards r, r + N, ...)."""
    val_path: Optional[str] = None
    test_path: Optional[str] = None
    # Without val_path: this share of the shards (at least one) validates.
    val_fraction: float = 0.1
    # Shuffle each epoch: the order of every reader's shards and, in blocks, the samples inside them.
    shuffle: bool = True
    # Raw samples shuffled together (memory: one block per reader); 1 keeps the stored order.
    shuffle_block: int = 256

    def __post_init__(self):
        super().__post_init__()
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)", self.val_fraction)
        require(self.shuffle_block >= 1, "data.shuffle_block", "must be >= 1", self.shuffle_block)


@dataclass
class ParquetConfig(ShardedDataConfig):
    _target_: str = "orchestrator.data.streaming.parquet.Parquet"
    name: str = "parquet"
    label: str = "label"
    # Feature columns (empty: every column but the label); a list-valued column is one feature vector.
    features: List[str] = field(default_factory=list)
    # classification (integer labels), regression, or auto (integer labels classify).
    task: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        require_choice("data.task", self.task, {"auto", "classification", "regression"})


@dataclass
class WebDatasetConfig(ShardedDataConfig):
    _target_: str = "orchestrator.data.streaming.tar_shards.WebDataset"
    name: str = "webdataset"
    # Extensions tried in turn for a sample's input (images are decoded with Pillow; npy; pth).
    input_keys: List[str] = field(default_factory=lambda: ["png", "jpg", "jpeg", "webp", "bmp", "npy", "pth"])
    label_key: str = "cls"
    image_size: Optional[int] = None
    channels: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        check_image_settings(self.image_size, self.channels)
        require(bool(self.input_keys), "data.input_keys", "must name at least one extension", self.input_keys)


FILE_SCHEMAS = [ImageFolderConfig, ParquetConfig, WebDatasetConfig]
