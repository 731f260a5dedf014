"""Checkpoint files on storage, written and read by whichever process holds them: rank 0 writes
them itself (``write_checkpoint``), every worker reads and verifies them on restore
(``StoredCheckpoint.read``), and the driver's store verifies and commits them.

A file is written to a temporary name, fsynced and renamed into place; its size and SHA-256 are
computed on the way out, so no second pass reads it back. It counts as a checkpoint only once its
manifest exists, and the manifest is written after the file is complete (by the driver's store):
a crash in the middle of a write leaves a stray temporary file, never a damaged "latest".
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple

CHUNK = 8 << 20
# Test hook (a fake for pure timing): seconds to sleep in the middle of every direct write, so that a
# test can kill the writing process while a write is in flight.
SLOW_WRITE_ENV = "ORCHESTRATOR_TEST_SLOW_CHECKPOINT_WRITE_S"


@dataclass
class Manifest:
    step: int
    epoch: int
    file: str
    bytes: int
    sha256: str
    metrics: Dict[str, float] = field(default_factory=dict)
    created: float = 0.0
    writer: str = "driver"  # who wrote the file: "rank0" (direct) or "driver"


class CorruptCheckpoint(RuntimeError):
    pass


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint on storage: its folder and its manifest (no bytes; cheap to send to every worker)."""
    directory: str
    manifest: Manifest

    @property
    def path(self) -> Path:
        return Path(self.directory) / self.manifest.file

    def read(self) -> bytes:
        """The file's bytes if they match the manifest (size and SHA-256); CorruptCheckpoint otherwise."""
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise CorruptCheckpoint(f"{self.manifest.file}: {err}") from None
        check_digest(self.manifest, len(data), hashlib.sha256(data).hexdigest())
        return data


def check_digest(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.bytes or sha256 != manifest.sha256:
        raise CorruptCheckpoint(f"{manifest.file}: {size} bytes, checksum does not match its manifest "
                                f"({manifest.bytes} bytes expected)")


def file_digest(path: Path) -> Tuple[int, str]:
    """Size and SHA-256 of a file, read in chunks (a large checkpoint is never held in memory)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class HashingFile:
    """What torch.save writes to (it only calls write and flush, in order): passes the bytes on to
    the file, counting and hashing them on the way."""

    def __init__(self, f, slow_s: float = 0.0):
        self.f, self.slow_s = f, slow_s
        self.digest, self.size = hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        written = self.f.write(data)
        if self.slow_s:
            self.f.flush()  # the partial file is on disk while the writer sleeps
            time.sleep(self.slow_s)
            self.slow_s = 0.0
        return written

    def flush(self) -> None:
        self.f.flush()


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_checkpoint(directory: str, file: str, payload: Dict[str, Any]) -> Tuple[int, str]:
    """torch.save ``payload`` to ``directory/file`` atomically; returns its size and SHA-256."""
    import torch  # not at module level: the driver imports the Manifest without torch

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    tmp = temp_name(path)
    with open(tmp, "wb") as f:
        sink = HashingFile(f, float(os.environ.get(SLOW_WRITE_ENV, "0") or 0))
        torch.save(payload, sink)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    return sink.size, sink.digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = temp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
