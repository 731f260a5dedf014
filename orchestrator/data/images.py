"""Decoding image bytes into the tensors the models take (Pillow), shared by the image folder and
the tar-shard readers."""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODES = {1: "L", 3: "RGB"}


def decode_image(raw: bytes, channels: int, image_size: Optional[int]) -> torch.Tensor:
    """(channels, H, W) float32 in [0, 1]; resized (bilinear) to image_size x image_size if given."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        image = image.convert(MODES[channels])
        if image_size and image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).float().div_(255.0)
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def image_channels(raw: bytes) -> int:
    """1 for a grey-scale image, 3 for anything else."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        return 1 if image.mode in ("1", "L", "I", "I;16", "F", "LA") else 3


def image_shape(raw: bytes) -> tuple:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        return image.size
