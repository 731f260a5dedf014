"""Writes the bundled 8x8 handwritten digits (scikit-learn's, offline) as PNG files, one folder per
class: <out>/<label>/<index>.png, the layout torchvision's ImageFolder reads.

    python -m digit_images.make_pngs data/digits_png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_pngs(out: Path, size: int = 16) -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image / 16.0 * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR).save(folder / f"{index:04d}.png")
    return len(digits.target)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/digits_png")
    print(f"wrote {write_pngs(target)} PNG files under {target}")
