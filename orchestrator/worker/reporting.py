"""How the training loop talks to the outside: one small interface, no Ray, no TensorBoard.

The loop calls the same methods on every rank. Rank 0 gets a reporter that
keeps metrics, events and checkpoints; the other ranks get one that only keeps
their heartbeat (a null object instead of ``if rank == 0`` branches).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Dict, List, Optional

from orchestrator.records import (CheckpointRecord, EventRecord, Heartbeat, HistogramRecord, InfoRecord,
                                  MetricsRecord, Record)


class Reporter:
    """Heartbeat plus an outbox of records the driver drains (``drain``); thread-safe."""

    def __init__(self, rank: int, keeps_records: bool):
        self.heartbeat = Heartbeat(rank)
        self.keeps_records = keeps_records
        self._outbox: deque = deque()
        self._lock = threading.Lock()
        self._stop_reason: Optional[str] = None

    # --- called by the loop
    def progress(self, step: int, phase: str) -> None:
        hb = self.heartbeat
        hb.step, hb.phase, hb.progress, hb.updated = step, phase, hb.progress + 1, time.time()

    def metrics(self, step: int, values: Dict[str, float]) -> None:
        self._put(MetricsRecord(step, values))

    def event(self, step: int, kind: str, message: str) -> None:
        self._put(EventRecord(step, kind, message))

    def histograms(self, step: int, histograms: Dict[str, Dict]) -> None:
        self._put(HistogramRecord(step, histograms))

    def info(self, record: InfoRecord) -> None:
        self._put(record)

    def checkpoint(self, step: int, payload: bytes, info: Dict[str, Any]) -> None:
        """``info`` holds the ``epoch`` and the validation ``metrics`` the checkpoint is ranked by."""
        # Checkpoint bytes travel in the record; the Ray worker's reporter sends records to the
        # run's RunSink, which writes the bytes to disk.
        self._put(CheckpointRecord(step, info["epoch"], info["metrics"], payload))

    def stop_reason(self) -> Optional[str]:
        return self._stop_reason

    # --- called from outside the loop (another thread)
    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def drain(self) -> List[Record]:
        with self._lock:
            records = list(self._outbox)
            self._outbox.clear()
        return records

    # --- overridable
    def wait_persisted(self) -> None:
        """Block until every checkpoint handed over is stored."""

    def _put(self, record: Record) -> None:
        if self.keeps_records:
            with self._lock:
                self._outbox.append(record)
