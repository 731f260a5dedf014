"""``data=image_folder``: a folder of image files with one sub-folder per class (torchvision's
ImageFolder layout), local or any fsspec URL. The driver lists the files; each worker opens only
the files of its own samples (map-style: the resumable DistributedSampler picks them), decoding
with Pillow in DataLoader worker processes when ``data.num_workers`` > 0.

If the folder holds ``train``/``val``/``test`` sub-folders (each with class folders), they are the
splits; otherwise ``data.val_fraction`` of the files (chosen with the seed) validate.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from orchestrator.config.errors import ConfigError
from orchestrator.data.bad_samples import bad_sample
from orchestrator.data.files import child_dirs, list_files, open_file
from orchestrator.data.images import IMAGE_SUFFIXES, decode_image, image_channels, image_shape
from orchestrator.data.module import CheckReport, DataInfo, DataModule, Splits, WorkerContext

SPLIT_FOLDERS = {"train", "val", "test"}


class ImageFiles:
    """A map-style dataset of image files: ``(image, label)``, or a BadSample (data.on_bad_sample=skip)."""

    def __init__(self, files: Sequence[str], labels: Sequence[int], classes: Sequence[str], channels: int,
                 image_size: int, on_bad_sample: str):
        self.files, self.labels, self.classes = list(files), np.asarray(labels, dtype=np.int64), list(classes)
        self.channels, self.image_size, self.on_bad_sample = channels, image_size, on_bad_sample
        self.may_skip_samples = on_bad_sample == "skip"  # loader.make_loader drops the markers

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch

        try:
            with open_file(self.files[i]) as handle:
                image = decode_image(handle.read(), self.channels, self.image_size)
        except Exception as err:  # noqa: BLE001 - a corrupt or unreadable file is a bad sample
            return bad_sample(self.on_bad_sample, self.files[i], err)
        return image, torch.tensor(self.labels[i])


class ImageFolder(DataModule):
    def __init__(self, path: str, image_size: Optional[int] = None, channels: Optional[int] = None,
                 val_fraction: float = 0.1, on_bad_sample: str = "fail", max_bad_samples: int = 100,
                 seed: int = 0):
        self.path, self.image_size, self.channels = path.rstrip("/"), image_size, channels
        self.val_fraction, self.on_bad_sample, self.seed = val_fraction, on_bad_sample, seed
        self.classes: List[str] = []
        self.split_files: Dict[str, Tuple[List[str], List[int]]] = {}

    def check(self) -> CheckReport:
        """List the class folders and their images (names only); a missing or empty folder fails here."""
        folders = child_dirs(self.path)
        if folders and set(folders) <= SPLIT_FOLDERS:
            if "train" not in folders:
                raise ConfigError(f"data.path: {self.path} has {', '.join(folders)} folders but no train folder")
            for split in folders:
                self.split_files[split] = self.list_split(f"{self.path}/{split}", split == "train")
        else:
            self.split_files = self.hold_out(*self.list_split(self.path, True))
        return CheckReport(sizes={split: len(files) for split, (files, _) in self.split_files.items()})

    def list_split(self, root: str, defines_classes: bool) -> Tuple[List[str], List[int]]:
        folders = child_dirs(root)
        if not folders:
            raise ConfigError(f"data.path: {root} has no class folders (expected {root}/<class>/<image>)")
        if defines_classes:
            self.classes = folders
        unknown = sorted(set(folders) - set(self.classes))
        if unknown:
            raise ConfigError(f"data.path: {root} has classes the training split lacks: {', '.join(unknown)}")
        files, labels = [], []
        for folder in folders:
            found = list_files(f"{root}/{folder}", IMAGE_SUFFIXES)
            files += found
            labels += [self.classes.index(folder)] * len(found)
        return files, labels

    def hold_out(self, files: List[str], labels: List[int]) -> Dict[str, Tuple[List[str], List[int]]]:
        order = np.random.default_rng(self.seed).permutation(len(files))
        n_val = int(round(len(files) * self.val_fraction))
        pick = lambda idx: ([files[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        splits = {"train": pick(order[n_val:])}
        if n_val:
            splits["val"] = pick(order[:n_val])
        return splits

    def setup(self, ctx: WorkerContext) -> Splits:
        first = self.split_files["train"][0][0]
        with open_file(first) as handle:  # every rank reads the same first image: all agree on the shape
            raw = handle.read()
        channels = self.channels or image_channels(raw)
        size = self.image_size or image_shape(raw)[0]
        datasets = {split: ImageFiles(files, labels, self.classes, channels, size, self.on_bad_sample)
                    for split, (files, labels) in self.split_files.items()}
        info = DataInfo(task="classification", input_shape=(channels, size, size), num_classes=len(self.classes))
        return Splits(datasets["train"], datasets.get("val"), datasets.get("test"), info)
