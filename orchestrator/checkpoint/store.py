"""The checkpoint folder, as the driver sees it: commits, verified reads, retention.

A checkpoint is ``step-<N>.pt`` plus its manifest ``step-<N>.json`` (size, SHA-256, step,
metrics); it exists once its manifest does. Two ways in (``transport.py``): rank 0 writes the file
itself and sends only a manifest record (``commit``: the file must be there with that size), or
rank 0 sends the bytes and the store writes them (``save``). The run's ``RunSink``, a small actor
pinned to the driver's node, does either as records arrive, in order. Files are written to a
temporary name, fsynced and renamed, data first and manifest last: a crash at any moment leaves
either a complete, verifiable checkpoint or none, never a damaged "latest".
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from orchestrator import config as C
from orchestrator.checkpoint.files import (CorruptCheckpoint, Manifest, StoredCheckpoint, check_digest, file_digest,
                                           write_atomic)  # noqa: F401 - the search ledger's import
from orchestrator.checkpoint.storage import Storage, open_storage, read_bytes, write_bytes

__all__ = ["CheckpointStore", "CorruptCheckpoint", "Manifest", "StoredCheckpoint", "resolve_resume", "step_file",
           "write_atomic"]


def step_file(step: int) -> str:
    return f"step-{step:09d}.pt"


def check_loadable(path: Path) -> None:
    """``state.check_loadable``, imported on first use: it needs torch, which the driver imports in the
    background while Ray starts (importing it with this module put ~1.5 s of torch before Ray's start)."""
    from orchestrator.checkpoint.state import check_loadable as check

    check(path)


class CheckpointStore:
    """``directory``: a local folder or an fsspec URL (``storage.py``). ``check_payload``: raises
    UnloadableCheckpoint for a file that matches its manifest yet does not load, given its local path or,
    on remote storage, an open file (None: bytes only, for stores of opaque payloads)."""

    def __init__(self, directory: Union[Path, str, Storage], cfg: C.CheckpointConfig,
                 warn: Callable[[str], None] = print, check_payload: Optional[Callable] = check_loadable):
        self.directory = open_storage(directory)
        self.cfg = cfg
        self.warn = warn
        self.check_payload = check_payload

    def save(self, step: int, payload: bytes, epoch: int, metrics: Dict[str, float]) -> Manifest:
        """Write the bytes rank 0 sent (checkpoint.transport=driver), then commit them."""
        manifest = Manifest(step=step, epoch=epoch, file=step_file(step), bytes=len(payload),
                            sha256=hashlib.sha256(payload).hexdigest(), metrics=dict(metrics), created=time.time())
        write_bytes(self.directory, manifest.file, payload)
        return self.write_manifest(manifest)

    def commit(self, manifest: Manifest) -> Manifest:
        """A file rank 0 wrote here itself: check it is there with the size it reported (cheap; the
        checksum is verified whenever it is read), then write its manifest."""
        try:
            size = self.directory.size(manifest.file)
        except OSError as err:
            raise CorruptCheckpoint(f"rank 0 reported {manifest.file}, but the driver cannot see it in "
                                    f"{self.directory} ({err}); set checkpoint.transport=driver, or a "
                                    "checkpoint.dir every node sees") from None
        if size != manifest.bytes:
            raise CorruptCheckpoint(f"{manifest.file}: {size} bytes on storage, rank 0 wrote {manifest.bytes}")
        return self.write_manifest(manifest)

    def write_manifest(self, manifest: Manifest) -> Manifest:
        name = Path(manifest.file).stem
        write_bytes(self.directory, f"{name}.json", json.dumps(asdict(manifest), indent=1).encode())
        self.retain()
        return manifest

    def manifests(self) -> List[Manifest]:
        """All readable manifests, oldest first (no data verification)."""
        found = []
        for name in self.directory.names("step-*.json"):
            try:
                found.append(Manifest(**json.loads(read_bytes(self.directory, name))))
            except (ValueError, TypeError, OSError) as err:
                self.warn(f"checkpoint manifest {name} is unreadable ({err}); ignoring it")
        return sorted(found, key=lambda m: m.step)

    def read(self, manifest: Manifest) -> bytes:
        """The checkpoint's bytes if they match the manifest and load; raises CorruptCheckpoint otherwise."""
        data = StoredCheckpoint(str(self.directory), manifest).read()
        self.check_loads(manifest)
        return data

    def verify(self, manifest: Manifest) -> StoredCheckpoint:
        """Like ``read``, without keeping the bytes: the file is hashed in chunks."""
        try:
            size, sha256 = file_digest(self.directory, manifest.file)
        except OSError as err:
            raise CorruptCheckpoint(f"{manifest.file}: {err}") from None
        check_digest(manifest, size, sha256)
        self.check_loads(manifest)
        return StoredCheckpoint(str(self.directory), manifest)

    def check_loads(self, manifest: Manifest) -> None:
        """A file can pass its checksum and still not load (written by a broken or newer version, or not a
        checkpoint at all). Every rank would then fail alike, which looks like a bug at the same step and
        stops the run; checking here instead lets the caller fall back to the previous checkpoint."""
        if self.check_payload is not None:
            from orchestrator.checkpoint.state import UnloadableCheckpoint

            try:
                local = self.directory.local_path(manifest.file)
                if local is not None:
                    self.check_payload(local)
                else:
                    with self.directory.open_read(manifest.file) as f:
                        self.check_payload(f)
            except UnloadableCheckpoint as err:
                raise CorruptCheckpoint(f"{manifest.file}: passes its checksum but does not load ({err})") from None

    def latest_good(self) -> Optional[StoredCheckpoint]:
        """Newest checkpoint that verifies; damaged ones are reported and skipped."""
        for manifest in reversed(self.manifests()):
            try:
                return self.verify(manifest)
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
                self.directory.remove(f"step-{m.step:09d}.json")
                self.directory.remove(m.file)
        if manifests:
            self.remove_dead_temp_files(manifests[-1].step)

    def remove_dead_temp_files(self, committed_step: int) -> None:
        """Temporary files of writes that never finished (a crash mid-write). Checkpoints are committed in
        step order with at most one write in flight, so none at or below the newest committed step is live."""
        for name in self.directory.names(".step-*.tmp-*"):
            try:
                step = int(name.split("-")[1].split(".")[0])
            except ValueError:
                continue
            if step <= committed_step:
                self.directory.remove(name)


def resolve_resume(resume: Optional[str], store: CheckpointStore) -> Optional[StoredCheckpoint]:
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
        return other.verify(matches[0])
    for folder in (path / "checkpoints", path):
        if folder.is_dir() and any(folder.glob("step-*.json")):
            found = CheckpointStore(folder, store.cfg, store.warn, store.check_payload).latest_good()
            if found is None:
                raise FileNotFoundError(f"trainer.resume: no intact checkpoint in {folder}")
            return found
    raise FileNotFoundError(f"trainer.resume: no checkpoints under {path}")
