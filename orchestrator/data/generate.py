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


# ----------------------------------------------------------------------------- large files, chunk by chunk
# ``scripts/data_scaling.py`` writes the same rows in several formats at sizes of gigabytes: rows are
# made chunk by chunk (digits at 28x28 plus seeded noise) and each chunk is written and dropped, so
# no writer ever holds more than one chunk.
def digit_chunks(num_rows: int, image_size: int = 28, chunk_rows: int = 16384,
                 seed: int = 0) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """(first row, (n, size, size) uint8 images, int64 labels) per chunk; row i is digit i % 1797 with
    noise from the chunk's own seeded stream, so every format gets the same rows."""
    base, labels = digits(image_size)
    for index, lo in enumerate(range(0, num_rows, chunk_rows)):
        hi = min(num_rows, lo + chunk_rows)
        which = np.arange(lo, hi) % len(base)
        noise = np.random.default_rng([seed, index]).normal(0, 12, (hi - lo, image_size, image_size))
        yield lo, np.clip(base[which] + noise, 0, 255).astype(np.uint8), labels[which].astype(np.int64)


def as_features(images: np.ndarray) -> np.ndarray:
    """(n, size*size) float32 in [0, 1], computed exactly as ``data=mnist`` loads IDX images."""
    return (images.astype(np.float32) / 255.0).reshape(len(images), -1)


def write_parquet_chunks(folder: Path, chunks, rows_per_file: int, row_group: int = 4096) -> Path:
    """Parquet files of ``rows_per_file`` rows (``id``, a float32 list column ``x``, ``label``), written
    a row group at a time from ``digit_chunks``; uncompressed, without dictionaries (the file holds
    the floats as they are, so its size is the data's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer, number = None, -1
    for lo, images, labels in chunks:
        x, start = as_features(images), 0
        while start < len(x):
            row = lo + start
            if row // rows_per_file != number:  # the next file begins at this row
                writer = writer.close() if writer is not None else None
                number = row // rows_per_file
            stop = min(len(x), start + row_group, (number + 1) * rows_per_file - lo)
            part = pa.table({"id": pa.array(np.arange(row, lo + stop, dtype=np.int64)),
                             "x": pa.FixedSizeListArray.from_arrays(pa.array(x[start:stop].ravel()), x.shape[1]),
                             "label": pa.array(labels[start:stop])})
            if writer is None:  # plain values: the file is as large as the floats it holds
                writer = pq.ParquetWriter(folder / f"part-{number:06d}.parquet", part.schema,
                                          compression="none", use_dictionary=False)
            writer.write_table(part, row_group_size=row_group)
            start = stop
    if writer is not None:
        writer.close()
    return folder


def idx_header(code: int, shape: Tuple[int, ...]) -> bytes:
    import struct

    return struct.pack(">HBB", 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def write_idx_chunks(folder: Path, chunks, num_rows: int, image_size: int = 28) -> Path:
    """MNIST-format ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (what ``data=mnist``
    reads), appended chunk by chunk."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train-images-idx3-ubyte", "wb") as images_file, \
            open(folder / "train-labels-idx1-ubyte", "wb") as labels_file:
        images_file.write(idx_header(0x08, (num_rows, image_size, image_size)))
        labels_file.write(idx_header(0x08, (num_rows,)))
        for _, images, labels in chunks:
            images_file.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
            labels_file.write(labels.astype(np.uint8).tobytes())
    return folder
