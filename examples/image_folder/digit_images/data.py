"""A folder of images, one sub-folder per class (the layout of torchvision's ImageFolder), read
with Pillow. The orchestrator calls ``image_folder_splits`` on every worker; each worker then
reads only the files of its own shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp"}


class ImageFolder(Dataset):
    def __init__(self, root: str, image_size: int):
        self.root = Path(root).expanduser()
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.files = [(path, label) for label, name in enumerate(self.classes)
                      for path in sorted((self.root / name).iterdir()) if path.suffix.lower() in EXTENSIONS]
        if not self.files:
            raise FileNotFoundError(f"no images under {self.root} (expected <root>/<class>/<image>.png)")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path, label = self.files[index]
        image = Image.open(path).convert("L").resize((self.image_size, self.image_size))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        return pixels.unsqueeze(0), label


def image_folder_splits(root: str, image_size: int = 16, val_fraction: float = 0.2, seed: int = 0):
    """Train and validation subsets of one folder, split the same way on every worker (by seed)."""
    full = ImageFolder(root, image_size)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(len(full) * val_fraction)
    train, val = Subset(full, order[n_val:]), Subset(full, order[:n_val])
    train.classes = full.classes  # tells the orchestrator how many classes there are
    return {"train": train, "val": val}
