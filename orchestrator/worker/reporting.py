"""How the training loop talks to the outside: one small interface, no Ray, no TensorBoard.

The loop calls the same methods on every rank. Rank 0 gets a reporter that
keeps metrics, events and checkpoints; the other ranks get one that only keeps
their heartbeat (a null object instead of ``if rank == 0`` branches).

Long phases that report no per-unit progress (build, restore, first step, checkpoint,
saving) are covered by a keepalive thread: it advances the heartbeat while such a phase
runs, up to ``phase_timeout_s``, so the driver's watchdog sees a slow phase as alive, a
phase past its bound as a hang, and its report names the phase either way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Dict, List, Optional

from orchestrator.checkpoint.writer import CheckpointWriter
from orchestrator.policy.watchdog import phase_kept_alive
from orchestrator.records import EventRecord, Heartbeat, HistogramRecord, InfoRecord, MetricsRecord, Record


KEEPALIVE_TICK_S = 0.5  # well below any sensible hang_timeout_s; one lock and an increment per tick
# Metrics rows every rank keeps (all ranks reduce the same values): rank 0 sends in batches (about every
# 0.5 s, up to 16 batches in flight), and what it had not delivered dies with it; a healed gang's new rank 0
# sends these again (peer_heal), and the driver drops the steps it already has. ~1 KB a row.
RECENT_METRICS_KEPT = 2048


class Reporter:
    """Heartbeat plus an outbox of records the driver drains (``drain``); thread-safe.

    ``phase_timeout_s``: keep the heartbeat alive in long phases for up to this long (None: no keepalive).
    """

    def __init__(self, rank: int, keeps_records: bool, phase_timeout_s: Optional[float] = None):
        self.heartbeat = Heartbeat(rank)
        self.keeps_records = keeps_records
        self.phase_timeout_s = phase_timeout_s
        self._outbox: deque = deque()
        self.recent_metrics: deque = deque(maxlen=RECENT_METRICS_KEPT)  # (step, values), on every rank
        self._lock = threading.Lock()
        self._beat_lock = threading.Lock()  # the training thread and the keepalive both advance the heartbeat
        self._stop_reason: Optional[str] = None
        self.noticed_at: Optional[float] = None  # when this rank got a preemption notice
        self._notice_voted = False
        self._keepalive: Optional[Keepalive] = None
        # Synchronous, bytes in the record (checkpoint.transport=driver); the Ray worker sets rank 0's.
        self.checkpoints = CheckpointWriter(self._put)
        if phase_timeout_s is not None:
            self._keepalive = Keepalive(self)
            self._keepalive.start()

    # --- called by the loop
    def progress(self, step: int, phase: str) -> None:
        with self._beat_lock:
            hb, now = self.heartbeat, time.time()
            if phase != hb.phase:
                hb.phase_started = now
            hb.step, hb.phase, hb.progress, hb.updated = step, phase, hb.progress + 1, now

    def enter_phase(self, phase: str) -> None:
        """Start a named phase at the current step (a long one is kept alive until the next phase)."""
        self.progress(self.heartbeat.step, phase)

    def tick(self) -> bool:
        """Called by the keepalive: advance the heartbeat if the current phase is a long one within
        its bound. Returns whether it did."""
        with self._beat_lock:
            hb = self.heartbeat
            alive = phase_kept_alive(hb.phase, time.time() - hb.phase_started, self.phase_timeout_s or 0.0)
            if alive:
                hb.progress += 1
            return alive

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stopped.set()

    def metrics(self, step: int, values: Dict[str, float]) -> None:
        self.recent_metrics.append((step, values))
        self._put(MetricsRecord(step, values))

    def resend(self, rows) -> None:
        """Metrics rows a lost rank 0 may not have delivered (a survivor's ``recent_metrics``)."""
        for step, values in rows:
            self.metrics(step, values)

    def event(self, step: int, kind: str, message: str) -> None:
        self._put(EventRecord(step, kind, message))

    def histograms(self, step: int, histograms: Dict[str, Dict]) -> None:
        self._put(HistogramRecord(step, histograms))

    def info(self, record: InfoRecord) -> None:
        self._put(record)

    def checkpoint(self, step: int, payload: Any, info: Dict[str, Any]) -> None:
        """``payload``: the checkpoint's contents (``state.capture_payload``). ``info`` holds the ``epoch``, the
        validation ``metrics`` the checkpoint is ranked by and ``blocked_since`` (when the loop stopped for it).
        The writer snapshots it and writes it (in the background with checkpoint.async_save), then sends
        its record: the manifest of the file rank 0 wrote, or the bytes for the driver to write."""
        self.checkpoints.save(step, payload, info["epoch"], info["metrics"], info.get("blocked_since"))

    def stop_reason(self) -> Optional[str]:
        return self._stop_reason

    def take_notice(self) -> bool:
        """True once after this rank was given notice (SIGTERM): the next flush votes to checkpoint."""
        if self.noticed_at is None or self._notice_voted:
            return False
        self._notice_voted = True
        return True

    # --- called from outside the loop (another thread)
    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def give_notice(self) -> None:
        """A preemption notice (SIGTERM): checkpoint with the gang, then leave it (callbacks/preemption.py)."""
        self.noticed_at = time.time()

    def drain(self) -> List[Record]:
        with self._lock:
            records = list(self._outbox)
            self._outbox.clear()
        return records

    # --- overridable
    def wait_persisted(self) -> None:
        """Block until every checkpoint handed over is stored."""
        self.checkpoints.wait()

    def _put(self, record: Record) -> None:
        if self.keeps_records:
            with self._lock:
                self._outbox.append(record)


class Keepalive(threading.Thread):
    """Ticks the reporter's heartbeat while a long phase runs (see ``Reporter.tick``)."""

    def __init__(self, reporter: Reporter, tick_s: float = KEEPALIVE_TICK_S):
        super().__init__(name="heartbeat-keepalive", daemon=True)
        self.reporter, self.tick_s = reporter, tick_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.tick_s):
            self.reporter.tick()
