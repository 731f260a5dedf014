"""The IDX format (MNIST's): a header checked on the driver before Ray starts, and the whole file read.

An IDX file is 0x00 0x00, a type code, the number of dimensions, one big-endian uint32 per dimension,
then the values, big-endian. Every problem is a ``ConfigError`` naming ``data.path`` and the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from orchestrator.config.errors import ConfigError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
KEY = "data.path"


@dataclass(frozen=True)
class IdxHeader:
    dtype: str
    shape: Tuple[int, ...]

    @property
    def offset(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def parse_header(raw: bytes, path: Path) -> IdxHeader:
    if len(raw) < 4:
        raise ConfigError(f"{KEY}: {path} is not an IDX file ({len(raw)} bytes, shorter than the 4-byte magic)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in DTYPES:
        raise ConfigError(f"{KEY}: {path} is not an IDX file (magic {raw[:4].hex()})")
    if len(raw) < 4 + 4 * ndim:
        raise ConfigError(f"{KEY}: {path} is truncated: its header is cut off (IDX, {ndim} dimensions)")
    return IdxHeader(DTYPES[dtype_code], struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim]))


def open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_bytes(path: Path, limit: Optional[int] = None) -> bytes:
    try:
        with open_idx(path) as f:
            return f.read() if limit is None else f.read(limit)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; a cut gzip an EOFError
        raise ConfigError(f"{KEY}: cannot read {path}: {type(err).__name__}: {err}") from None


def check_idx(path: Path, ndim: int) -> IdxHeader:
    """The header (a few bytes, also of a gzipped file), its dimensions, and for a plain file its size."""
    header = parse_header(read_bytes(path, 4 + 4 * 255), path)
    if len(header.shape) != ndim:
        raise ConfigError(f"{KEY}: {path} holds a {len(header.shape)}-dimensional array {header.shape}, "
                          f"expected {ndim} dimensions")
    if path.suffix != ".gz":  # a gzipped file's length is only known by decompressing it (in load)
        check_length(header, path.stat().st_size - header.offset, path)
    return header


def check_length(header: IdxHeader, available: int, path: Path) -> None:
    if available < header.data_bytes:
        raise ConfigError(f"{KEY}: {path} is truncated: its header promises {header.shape} values "
                          f"({header.data_bytes} bytes), the file holds {max(available, 0)} bytes of data")


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file, gzipped or not."""
    raw = read_bytes(path)
    header = parse_header(raw, path)
    check_length(header, len(raw) - header.offset, path)
    return np.frombuffer(raw, dtype=header.dtype, count=int(np.prod(header.shape, dtype=np.int64)),
                         offset=header.offset).reshape(header.shape)
