"""Checkpoint files on storage, written and read by whichever process holds them: rank 0 writes
them itself (``write_checkpoint``), every worker reads and verifies them on restore
(``StoredCheckpoint.read``), and the driver's store verifies and commits them. The storage is a
local folder or any fsspec URL (``storage.py``).

A file is written to a temporary name, fsynced and renamed into place (on a filesystem without an
atomic rename, such as an object store: under its final name); its size and SHA-256 are computed on
the way out, so no second pass reads it back. It counts as a checkpoint only once its manifest
exists, and the manifest is written after the file is complete (by the driver's store): a crash in
the middle of a write leaves a stray temporary (or manifest-less) file, never a damaged "latest".
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple

from orchestrator.checkpoint.storage import LocalStorage, Storage, each_chunk, open_storage, read_bytes, write_bytes

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
        """The file on this machine (a local checkpoint dir only)."""
        return Path(self.directory) / self.manifest.file

    def read(self) -> bytes:
        """The file's bytes if they match the manifest (size and SHA-256); CorruptCheckpoint otherwise."""
        try:
            data = read_bytes(open_storage(self.directory), self.manifest.file)
        except OSError as err:
            raise CorruptCheckpoint(f"{self.manifest.file}: {err}") from None
        check_digest(self.manifest, len(data), hashlib.sha256(data).hexdigest())
        return data


def check_digest(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.bytes or sha256 != manifest.sha256:
        raise CorruptCheckpoint(f"{manifest.file}: {size} bytes, checksum does not match its manifest "
                                f"({manifest.bytes} bytes expected)")


def file_digest(storage: Storage, name: str) -> Tuple[int, str]:
    """Size and SHA-256 of a file, read in chunks (a large checkpoint is never held in memory)."""
    digest, size = hashlib.sha256(), 0
    for chunk in each_chunk(storage, name, CHUNK):
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


def write_checkpoint(directory: str, file: str, payload: Dict[str, Any]) -> Tuple[int, str]:
    """torch.save ``payload`` to ``directory/file`` (a local folder or an fsspec URL) atomically, as far as
    the storage allows (``storage.py``); returns its size and SHA-256."""
    import torch  # not at module level: the driver imports the Manifest without torch

    with open_storage(directory).writing(file) as f:
        sink = HashingFile(f, float(os.environ.get(SLOW_WRITE_ENV, "0") or 0))
        torch.save(payload, sink)
    return sink.size, sink.digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """A small local file, atomically (temporary name, fsync, rename)."""
    write_bytes(LocalStorage(path.parent), path.name, data)
