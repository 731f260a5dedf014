"""Writing small or large datasets to disk in the built-in file formats, from scikit-learn's bundled
digits (offline): for the examples, the tests and ``scripts/data_scaling.py``. Every sample carries
its id (the Parquet ``id`` column, the tar key), so a test can count which samples a run read."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np


def digits(image_size: int = 8, repeat: int = 1, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 images and their labels; ``repeat`` > 1 adds noisy copies (more data)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0 * 255).astype(np.uint8)
    if image_size != 8:
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(a).resize((image_size, image_size), Image.BILINEAR))
                           for a in images])
    rng = np.random.default_rng(seed)
    copies = [images] + [np.clip(images + rng.normal(0, 12, images.shape), 0, 255).astype(np.uint8)
                         for _ in range(repeat - 1)]
    return np.concatenate(copies), np.tile(bunch.target, repeat)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def shard_ranges(n: int, per_shard: int) -> Iterator[Tuple[int, int, int]]:
    for number, lo in enumerate(range(0, n, per_shard)):
        yield number, lo, min(n, lo + per_shard)


def write_webdataset(folder: Path, images: np.ndarray, labels: np.ndarray, per_shard: int) -> Path:
    """Tar shards ``shard-000000.tar``, ... with ``<id>.png`` and ``<id>.cls`` per sample."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for number, lo, hi in shard_ranges(len(images), per_shard):
        with tarfile.open(folder / f"shard-{number:06d}.tar", "w") as archive:
            for i in range(lo, hi):
                for ext, data in (("png", png_bytes(images[i])), ("cls", str(int(labels[i])).encode())):
                    member = tarfile.TarInfo(f"{i:08d}.{ext}")
                    member.size = len(data)
                    archive.addfile(member, io.BytesIO(data))
    return folder


def write_parquet(folder: Path, features: np.ndarray, labels: np.ndarray, per_file: int,
                  row_group: int = 1024, vector_column: bool = False) -> Path:
    """``part-000000.parquet``, ...: an ``id`` column, the features (one float column each, or one list
    column ``x``) and ``label``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = features.reshape(len(features), -1).astype(np.float32)
    for number, lo, hi in shard_ranges(len(flat), per_file):
        columns = {"id": pa.array(np.arange(lo, hi, dtype=np.int64))}
        if vector_column:
            columns["x"] = pa.FixedSizeListArray.from_arrays(pa.array(flat[lo:hi].ravel()), flat.shape[1])
        else:
            columns.update({f"f{j}": pa.array(flat[lo:hi, j]) for j in range(flat.shape[1])})
        columns["label"] = pa.array(labels[lo:hi].astype(np.int64))
        pq.write_table(pa.table(columns), folder / f"part-{number:06d}.parquet", row_group_size=row_group)
    return folder


def write_image_folder(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``<folder>/<label>/<id>.png``."""
    folder = Path(folder)
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(int(label))).mkdir(parents=True, exist_ok=True)
        (folder / str(int(label)) / f"{i:08d}.png").write_bytes(png_bytes(image))
    return folder
