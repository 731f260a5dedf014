"""How the training loop talks to the outside: one small interface, no Ray, no TensorBoard.

The loop calls the same methods on every rank. Rank 0 gets a reporter that
keeps metrics, events and checkpoints; the other ranks get one that only keeps
their heartbeat (a null object instead of ``if rank == 0`` branches).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Heartbeat:
    rank: int
    step: int = 0
    phase: str = "starting"   # starting | train | validate | test | checkpoint | done
    progress: int = 0         # grows with every step or evaluation batch
    updated: float = field(default_factory=time.time)


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
        self._put({"kind": "metrics", "step": step, "values": values})

    def event(self, step: int, kind: str, message: str) -> None:
        self._put({"kind": "event", "step": step, "event": kind, "message": message})

    def histograms(self, step: int, histograms: Dict[str, Dict]) -> None:
        self._put({"kind": "histograms", "step": step, "histograms": histograms})

    def info(self, values: Dict[str, Any]) -> None:
        self._put({"kind": "info", "values": values})

    def checkpoint(self, step: int, payload: bytes, info: Dict[str, Any]) -> None:
        self._put({"kind": "checkpoint", "step": step, "info": info, **self.persist(step, payload, info)})

    def stop_reason(self) -> Optional[str]:
        return self._stop_reason

    # --- called from outside the loop (another thread)
    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def drain(self) -> List[Dict[str, Any]]:
        with self._lock:
            records = list(self._outbox)
            self._outbox.clear()
        return records

    # --- overridable
    def persist(self, step: int, payload: bytes, info: Dict[str, Any]) -> Dict[str, Any]:
        """Checkpoint bytes travel in the record; the Ray worker's reporter sends records to the
        run's RunSink, which writes the bytes to disk."""
        return {"payload": payload}

    def wait_persisted(self) -> None:
        """Block until every checkpoint handed to ``persist`` is stored."""

    def _put(self, record: Dict[str, Any]) -> None:
        if self.keeps_records:
            with self._lock:
                self._outbox.append(record)
