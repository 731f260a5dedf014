"""The run's sink on the driver's node: rank 0 sends it every record, in order.

Metrics, events and checkpoints travel down this one channel. Ray delivers
calls from one caller to one actor in order, so when a checkpoint has arrived,
every metric logged before it has arrived too: a worker that dies right after
a checkpoint leaves no hole in the curves before the step the run resumes
from. The sink commits checkpoints at once (the manifest of a file rank 0 wrote
itself, or the bytes it sent: see ``checkpoint/transport.py``) and keeps the other
records until the driver drains them.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import List

from orchestrator import config as C
from orchestrator.checkpoint.store import CheckpointStore
from orchestrator.records import CheckpointRecord, Record


class RunSink:
    """A plain class; the launcher makes it a Ray actor on the driver's node (one per run)."""

    def __init__(self, checkpoint_dir: str, cfg: C.CheckpointConfig):
        self.store = CheckpointStore(checkpoint_dir, cfg, warn=lambda message: None)  # a path or an fsspec URL
        self.records: List[Record] = []
        self.lock = threading.Lock()

    def push(self, records: List[Record]) -> None:
        for record in records:
            if isinstance(record, CheckpointRecord):
                self.store_checkpoint(record)
                record = dataclasses.replace(record, payload=None)  # the driver needs no copy of the bytes
            with self.lock:
                self.records.append(record)

    def store_checkpoint(self, record: CheckpointRecord) -> None:
        if record.manifest is not None:  # rank 0 wrote the file into the checkpoint dir itself
            self.store.commit(record.manifest)
        else:
            self.store.save(record.step, record.payload, record.epoch, record.metrics)

    def drain(self) -> List[Record]:
        with self.lock:
            records, self.records = self.records, []
        return records
