"""The data component's contract: what a dataset gives the workers.

``data._target_`` names either

* a function (or class) that returns the datasets, called **on each worker** so data never passes
  through the driver: ``make_datasets(**kwargs) -> Splits | {"train": ds, "val": ds, "test": ds} |
  (train, val) | train``, each a ``torch.utils.data.Dataset``; it may name ``rank``, ``world_size``
  and ``seed`` to get them; or
* a ``DataModule`` subclass, built on the driver (its constructor only keeps settings), whose
  ``check()`` runs before Ray starts, ``prepare()`` once on the driver, and ``setup(ctx)`` on each
  worker (like Lightning's prepare_data/setup). The built-in in-memory datasets are DataModules that
  load arrays once and share them through Ray's object store (``memory.py``).

Each rank then wraps its split in a resumable ``DistributedSampler`` and a ``DataLoader``
(``loader.py``); batches may be tensors, tuples or dicts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from orchestrator.components.spec import Spec


@dataclass
class DataInfo:
    """What the model, the loss and the reports need to know about the data (all optional)."""
    task: Optional[str] = None                  # classification | regression | language | None (unknown)
    input_shape: Optional[Tuple[int, ...]] = None
    num_classes: Optional[int] = None           # classes, or the vocabulary size for text
    num_targets: Optional[int] = None           # regression outputs
    sizes: Dict[str, int] = field(default_factory=dict)
    vocabulary: Optional[list] = None

    def num_outputs(self, loss_kind: Optional[str]) -> Optional[int]:
        if loss_kind == "bce":
            return 1  # binary cross-entropy takes a single logit
        return self.num_classes if self.task != "regression" else self.num_targets


@dataclass
class Splits:
    train: Any                       # a torch Dataset
    val: Optional[Any] = None
    test: Optional[Any] = None
    info: DataInfo = field(default_factory=DataInfo)


@dataclass
class CheckReport:
    """What ``DataModule.check`` found on the driver before Ray starts."""
    # Split sizes known without loading (e.g. from a file header); with "train", data.batch_size is
    # checked against each worker's share before Ray starts. Empty: only the workers know.
    sizes: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)  # shown and recorded once the run's recorder exists
    # Sharded data: (world_size, loader workers, batch_size) -> why every reader cannot fill a batch, or None.
    layout_problem: Optional[Callable[[int, int, int], Optional[str]]] = None


@dataclass(frozen=True)
class WorkerContext:
    rank: int
    world_size: int
    seed: int


class DataModule:
    def check(self) -> Optional[CheckReport]:
        """On the driver, before Ray starts: fail fast on a missing or unreadable file (a ConfigError or
        FileNotFoundError naming the key and the file); optionally report the split sizes and warnings."""
        return None

    def prepare(self) -> None:
        """On the driver, once, while Ray starts (e.g. load arrays)."""

    def to_workers(self) -> "DataModule":
        """What is sent to the workers (after Ray is up; e.g. with the arrays put in the object store)."""
        return self

    def for_attempt(self, world_size: int) -> "DataModule":
        """What one gang of ``world_size`` ranks gets (e.g. one Ray Data split per rank)."""
        return self

    def setup(self, ctx: WorkerContext) -> Splits:
        raise NotImplementedError


class FactoryData(DataModule):
    """A user's dataset factory, called on each worker."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def setup(self, ctx: WorkerContext) -> Splits:
        try:
            answer = self.spec.build(rank=ctx.rank, world_size=ctx.world_size, seed=ctx.seed)
        except Exception as err:
            raise DataError(f"data: {self.spec.label} raised {type(err).__name__}: {err}") from err
        return as_splits(answer, self.spec.label)


class DataError(RuntimeError):
    """A user's dataset could not be built on a worker (the message names the section and the target)."""


def as_splits(answer: Any, label: str) -> Splits:
    if isinstance(answer, Splits):
        splits = answer
    elif isinstance(answer, dict):
        unknown = set(answer) - {"train", "val", "test"}
        if "train" not in answer or unknown:
            raise TypeError(f"data: {label} returned a dict with keys {sorted(answer)}; expected train (and "
                            "optionally val, test)")
        splits = Splits(answer["train"], answer.get("val"), answer.get("test"))
    elif isinstance(answer, (tuple, list)) and 1 <= len(answer) <= 3:
        splits = Splits(*answer)
    else:
        splits = Splits(answer)
    for name in ("train", "val", "test"):
        dataset = getattr(splits, name)
        if dataset is not None and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"data: {label} returned {type(dataset).__name__} for {name}, not a map-style "
                            "torch Dataset (with __getitem__ and __len__)")
    splits.info = infer_info(splits)
    return splits


def infer_info(splits: Splits) -> DataInfo:
    """From the datasets themselves: sizes, the first sample's input shape, and the classes where the
    dataset says (a ``classes`` list, as torchvision's ImageFolder has, or ``num_classes``)."""
    info = splits.info
    info.sizes = info.sizes or {name: len(getattr(splits, name)) for name in ("train", "val", "test")
                                if getattr(splits, name) is not None}
    train = splits.train
    if info.num_classes is None:
        classes = getattr(train, "classes", None)
        info.num_classes = len(classes) if classes is not None else getattr(train, "num_classes", None)
    if info.task is None and info.num_classes is not None:
        info.task = "classification"
    if info.input_shape is None and len(train):
        first = train[0]
        x = first[0] if isinstance(first, (tuple, list)) else None
        info.input_shape = tuple(x.shape) if hasattr(x, "shape") else None
    return info


def data_module(spec: Spec, seed: int) -> DataModule:
    """A DataModule class is built here (on the driver); anything else becomes a worker-side factory."""
    target = spec.resolve()
    if inspect.isclass(target) and issubclass(target, DataModule):
        return spec.build(seed=seed)
    return FactoryData(spec)
