"""Checkpoint files in the run dir: atomic writes, verified reads, retention.

Rank 0 serializes the full state (``state.capture``) and sends the bytes to
the run's ``RunSink``, a small actor pinned to the driver's node, which writes
them here: checkpoints reach the driver's storage even when rank 0 runs on
another node, and are safe as soon as they arrive, even if rank 0 dies a
moment later.

A checkpoint is ``step-<N>.pt`` plus its manifest ``step-<N>.json`` (size,
SHA-256, step, metrics). Each file is written to a temporary name, fsynced
and renamed, data first and manifest last: a crash at any moment leaves
either a complete, verifiable checkpoint or none, never a damaged "latest".
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from orchestrator import config as C
from orchestrator.checkpoint.state import UnloadableCheckpoint, check_loadable


@dataclass
class Manifest:
    step: int
    epoch: int
    file: str
    bytes: int
    sha256: str
    metrics: Dict[str, float] = field(default_factory=dict)
    created: float = 0.0


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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


class CheckpointStore:
    """``check_payload``: raises UnloadableCheckpoint for a file that matches its manifest yet does not load
    (None: bytes only, for stores of opaque payloads)."""

    def __init__(self, directory: Path, cfg: C.CheckpointConfig, warn: Callable[[str], None] = print,
                 check_payload: Optional[Callable[[Path], None]] = check_loadable):
        self.directory = Path(directory)
        self.cfg = cfg
        self.warn = warn
        self.check_payload = check_payload

    def save(self, step: int, payload: bytes, epoch: int, metrics: Dict[str, float]) -> Manifest:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:09d}"
        manifest = Manifest(step=step, epoch=epoch, file=f"{name}.pt", bytes=len(payload),
                            sha256=hashlib.sha256(payload).hexdigest(), metrics=dict(metrics), created=time.time())
        write_atomic(self.directory / manifest.file, payload)
        write_atomic(self.directory / f"{name}.json", json.dumps(asdict(manifest), indent=1).encode())
        self.retain()
        return manifest

    def manifests(self) -> List[Manifest]:
        """All readable manifests, oldest first (no data verification)."""
        found = []
        for path in sorted(self.directory.glob("step-*.json")):
            try:
                found.append(Manifest(**json.loads(path.read_text())))
            except (ValueError, TypeError, OSError) as err:
                self.warn(f"checkpoint manifest {path.name} is unreadable ({err}); ignoring it")
        return sorted(found, key=lambda m: m.step)

    def read(self, manifest: Manifest) -> bytes:
        """The checkpoint's bytes if they match the manifest and load; raises CorruptCheckpoint otherwise.

        A file can pass its checksum and still not load (written by a broken or newer version, or not a
        checkpoint at all). Every rank would then fail alike, which looks like a bug at the same step and
        stops the run; checking here instead lets the caller fall back to the previous checkpoint."""
        path = self.directory / manifest.file
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CorruptCheckpoint(f"{path.name}: {err}") from None
        if len(data) != manifest.bytes or hashlib.sha256(data).hexdigest() != manifest.sha256:
            raise CorruptCheckpoint(f"{path.name}: {len(data)} bytes, checksum does not match its manifest "
                                    f"({manifest.bytes} bytes expected)")
        if self.check_payload is not None:
            try:
                self.check_payload(path)
            except UnloadableCheckpoint as err:
                raise CorruptCheckpoint(f"{path.name}: passes its checksum but does not load ({err})") from None
        return data

    def latest_good(self) -> Optional[Tuple[Manifest, bytes]]:
        """Newest checkpoint that verifies; damaged ones are reported and skipped."""
        for manifest in reversed(self.manifests()):
            try:
                return manifest, self.read(manifest)
            except CorruptCheckpoint as err:
                self.warn(f"checkpoint at step {manifest.step} is damaged ({err}); trying the previous one")
        return None

    def best(self) -> Optional[Manifest]:
        ranked = self.ranked_by_metric(self.manifests())
        return ranked[0] if ranked else None

    def ranked_by_metric(self, manifests: List[Manifest]) -> List[Manifest]:
        scored = [m for m in manifests if self.cfg.monitor in m.metrics]
        return sorted(scored, key=lambda m: m.metrics[self.cfg.monitor], reverse=self.cfg.mode == "max")

    def retain(self) -> None:
        """Keep the newest keep_last and the best keep_best by the monitored metric."""
        manifests = self.manifests()
        keep = {m.step for m in manifests[-self.cfg.keep_last:]}
        keep |= {m.step for m in self.ranked_by_metric(manifests)[:self.cfg.keep_best]}
        for m in manifests:
            if m.step not in keep:
                # Manifest first: a half-deleted checkpoint is never taken for a good one.
                (self.directory / f"step-{m.step:09d}.json").unlink(missing_ok=True)
                (self.directory / m.file).unlink(missing_ok=True)


class CorruptCheckpoint(RuntimeError):
    pass


def resolve_resume(resume: Optional[str], store: CheckpointStore) -> Optional[Tuple[Manifest, bytes]]:
    """trainer.resume: null -> fresh start; "auto" -> this run dir's newest good checkpoint (if any);
    a run dir or checkpoints dir -> its newest good one; a step-N.pt file -> exactly that one."""
    if resume is None:
        return None
    if resume == "auto":
        return store.latest_good()
    path = Path(resume).expanduser()
    if path.is_file():
        other = CheckpointStore(path.parent, store.cfg, store.warn, store.check_payload)
        matches = [m for m in other.manifests() if m.file == path.name]
        if not matches:
            raise FileNotFoundError(f"trainer.resume: {path} has no manifest {path.stem}.json beside it")
        return matches[0], other.read(matches[0])
    for folder in (path / "checkpoints", path):
        if folder.is_dir() and any(folder.glob("step-*.json")):
            found = CheckpointStore(folder, store.cfg, store.warn, store.check_payload).latest_good()
            if found is None:
                raise FileNotFoundError(f"trainer.resume: no intact checkpoint in {folder}")
            return found
    raise FileNotFoundError(f"trainer.resume: no checkpoints under {path}")
