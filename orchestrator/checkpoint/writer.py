"""Rank 0's checkpoint saves: a host-memory snapshot at the step boundary, the write in the background.

``save`` blocks training only for the snapshot (a CPU copy of the state's tensors) and for the
previous write if it is still running (at most one write is in flight); the file is written by a
background thread while training goes on. When the write is complete, a metrics record
(``checkpoint/blocked_ms``, ``checkpoint/write_ms``) and the checkpoint record go out, in that order,
through the reporter's ordered channel: every metric of the steps up to the checkpoint was sent
before it, so "metrics arrive before their checkpoint" still holds.

Where the file goes (``transport.py``): with a ``directory``, rank 0 writes it there itself and the
record carries only its manifest; without one, the record carries the bytes and the driver writes
them.

torch.distributed.checkpoint's ``async_save`` does the same two stages (its default stager copies the
state dict into CPU memory, then ``dcp.save`` runs in a thread or process and returns a Future). It is
not used here: it writes its own format (a folder of per-rank ``.distcp`` shards plus ``.metadata``,
planned collectively by every rank), which ``torch.load(weights_only=True)``, our SHA-256 manifests
and retention do not read, and our state (replicated under DDP, saved by rank 0 alone, with every
rank's RNG) gains nothing from sharding. It is the path to take for FSDP-sharded state.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, Callable, Dict, Optional

import torch

from orchestrator.checkpoint import state as S
from orchestrator.checkpoint.files import Manifest, write_checkpoint
from orchestrator.checkpoint.store import step_file
from orchestrator.records import CheckpointRecord, MetricsRecord, Record


def host_copy(obj: Any, spare: Any = None) -> Any:
    """A copy of a nested payload whose tensors are in host memory and no longer change with training.
    ``spare``: an earlier snapshot no longer in use; its tensors of the same shape and dtype are
    reused (filling existing memory is several times faster than allocating it afresh)."""
    copied = _copy(obj, spare)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # the non-blocking device-to-host copies below have landed
    return copied


def _copy(obj: Any, spare: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        if (isinstance(spare, torch.Tensor) and spare.device.type == "cpu" and spare.shape == obj.shape
                and spare.dtype == obj.dtype):
            return spare.copy_(obj.detach(), non_blocking=obj.device.type != "cpu")
        if obj.device.type == "cpu":
            return obj.detach().clone()
        return obj.detach().to("cpu", non_blocking=True)
    if isinstance(obj, dict):
        spare = spare if isinstance(spare, dict) else {}
        return {key: _copy(value, spare.get(key)) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        spare = spare if isinstance(spare, (list, tuple)) and len(spare) == len(obj) else [None] * len(obj)
        return type(obj)(_copy(value, old) for value, old in zip(obj, spare))
    return copy.deepcopy(obj)


class CheckpointWriter:
    """``emit`` puts a record on the reporter's ordered channel (thread-safe). ``directory``: where rank 0
    writes the files itself (None: the bytes travel in the record). ``async_save``: write in the background."""

    def __init__(self, emit: Callable[[Record], None], directory: Optional[str] = None, async_save: bool = False):
        self.emit, self.directory, self.async_save = emit, directory, async_save
        self.thread: Optional[threading.Thread] = None
        self.spare: Any = None  # the previous snapshot, once written: its memory is reused
        self.error: Optional[BaseException] = None

    def save(self, step: int, payload: Any, epoch: int, metrics: Dict[str, float],
             blocked_since: Optional[float] = None) -> None:
        """``payload``: the checkpoint's contents (``state.capture_payload``), or bytes already serialized.
        ``blocked_since``: when the training loop stopped for this checkpoint (perf_counter)."""
        started = blocked_since if blocked_since is not None else time.perf_counter()
        self.wait()
        job = dict(step=step, epoch=epoch, metrics=dict(metrics))
        if not self.async_save:
            self.write(payload, started, **job)
            return
        snapshot = payload if isinstance(payload, (bytes, bytearray)) else host_copy(payload, self.spare)
        self.spare = None
        blocked_s = time.perf_counter() - started
        self.thread = threading.Thread(target=self.write_in_background, args=(snapshot, blocked_s), kwargs=job,
                                       name="checkpoint-writer", daemon=True)  # a crash mid-write leaves no manifest
        self.thread.start()

    def wait(self) -> None:
        """Until the write in flight (if any) is complete; re-raises its error on the training thread."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def write_in_background(self, snapshot: Any, blocked_s: float, **job) -> None:
        try:
            self.write(snapshot, None, blocked_s=blocked_s, **job)
            self.spare = snapshot  # read by the next save only after it joined this thread
        except BaseException as err:  # noqa: BLE001 - raised on the training thread by the next wait()
            self.error = err

    def write(self, payload: Any, started: Optional[float], step: int, epoch: int, metrics: Dict[str, float],
              blocked_s: Optional[float] = None) -> None:
        t0 = time.perf_counter()
        record = self.written(payload, step, epoch, metrics)
        done = time.perf_counter()
        blocked = blocked_s if blocked_s is not None else done - started
        self.emit(MetricsRecord(step, {"checkpoint/blocked_ms": 1000 * blocked, "checkpoint/write_ms": 1000 * (done - t0)}))
        self.emit(record)

    def written(self, payload: Any, step: int, epoch: int, metrics: Dict[str, float]) -> CheckpointRecord:
        serialized = isinstance(payload, (bytes, bytearray))
        if self.directory is None:
            return CheckpointRecord(step, epoch, metrics, payload if serialized else S.serialize(payload))
        size, sha256 = write_checkpoint(self.directory, step_file(step), payload)
        manifest = Manifest(step=step, epoch=epoch, file=step_file(step), bytes=size, sha256=sha256,
                            metrics=dict(metrics), created=time.time(), writer="rank0")
        return CheckpointRecord(step, epoch, metrics, manifest=manifest)
