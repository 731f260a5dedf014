"""Schema of ``data=ray_data`` (a ``ray.data.Dataset`` fed to each rank through ``streaming_split``):
typed, checked where it is defined. The component itself is ``ray_data.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from orchestrator.config.errors import require, require_choice
from orchestrator.data.schemas import DataConfig

# none: Ray Data's order; local: a buffer of rows shuffled on each rank as it reads (streams, costs
# one buffer of memory); blocks: also the order of the dataset's blocks, reshuffled every epoch
# (Dataset.randomize_block_order: it materializes the dataset in the object store first).
SHUFFLES = ("none", "local", "blocks")


@dataclass
class RayDataConfig(DataConfig):
    _target_: str = "orchestrator.data.ray_data.RayDataset"
    name: str = "ray_data"
    # Import path of a function returning the training ray.data.Dataset (called on the driver once
    # Ray is up), e.g. my_project.data.train_ds; or pass the Dataset itself: orchestrator.run(data=ds)
    # (so it may be null here; the driver checks it before Ray starts).
    dataset: Optional[str] = None
    # The same for a validation Dataset (null: no validation).
    val_dataset: Optional[str] = None
    # Columns of (x, y) batches: the features (one column keeps its tensor shape; several are
    # flattened and concatenated as float32) and the label. Neither: batches are dicts of tensors
    # (name a step function, step._target_=..., to use them).
    feature_columns: List[str] = field(default_factory=list)
    label_column: Optional[str] = None
    # classification (integer labels), regression, or auto (integer labels classify).
    task: str = "auto"
    # Classes (null: the largest label + 1, which costs one pass over the label column on the driver).
    num_classes: Optional[int] = None
    shuffle: str = "local"
    # Rows in each rank's local shuffle buffer (shuffle=local or blocks).
    shuffle_buffer: int = 1024
    # Batches Ray Data prepares ahead on each rank (iter_torch_batches' prefetch_batches).
    prefetch_batches: int = 1

    def __post_init__(self):
        super().__post_init__()
        require_choice("data.task", self.task, {"auto", "classification", "regression"})
        require_choice("data.shuffle", self.shuffle, set(SHUFFLES))
        require(self.shuffle_buffer >= 1, "data.shuffle_buffer", "must be >= 1", self.shuffle_buffer)
        require(self.prefetch_batches >= 0, "data.prefetch_batches", "must be >= 0", self.prefetch_batches)
        require(self.num_classes is None or self.num_classes >= 2, "data.num_classes", "must be >= 2 or null",
                self.num_classes)
        check_columns(self.feature_columns, self.label_column)
        # Ray Data reads in its own tasks across the cluster: there are no DataLoader workers to start.
        require(self.num_workers == 0, "data.num_workers", "does not apply to Ray Data (its own tasks read "
                "and preprocess); leave it 0", self.num_workers)


def check_columns(features: List[str], label: Optional[str]) -> None:
    require(bool(features) == (label is not None), "data.label_column" if features else "data.feature_columns",
            "must be set with the other: name both data.feature_columns and data.label_column for (x, y) "
            "batches, or neither for dict batches", label if features else features)
    require(label not in features, "data.label_column", "must not also be a feature column", label)


def is_ray_dataset(obj) -> bool:
    """Without importing Ray: whoever holds a Dataset has imported ray.data already."""
    import sys

    ray_data = sys.modules.get("ray.data")
    return ray_data is not None and isinstance(obj, ray_data.Dataset)


class GivenDataset:
    """A Dataset passed from Python (``orchestrator.run(data=ds)``), held as ``data.dataset``: a
    callable returning it, like a configured function (and not iterable, unlike the Dataset itself,
    so the config's YAML and hyperparameter records show it by name)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self):
        return self.dataset

    def __repr__(self) -> str:
        return "GivenDataset(<ray.data.Dataset from orchestrator.run(data=...)>)"
