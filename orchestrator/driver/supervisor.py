"""Watches one attempt of a run: drains worker records, detects failures and hangs,
forwards stop requests. Never on the step path: it polls every POLL_INTERVAL_S,
on threads of the workers that do not train."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from orchestrator import config as C
from orchestrator.policy.failure import Failure, Kind, TrainingError, root_cause
from orchestrator.policy.hang_report import NO_STACK, RankState, full_dump, hang_report, likely_culprit
from orchestrator.records import Heartbeat, Record
from orchestrator.policy.outcomes import AttemptStatus, Outcome
from orchestrator.policy.watchdog import UNIT_PHASES, Watchdog
from orchestrator.driver.worker_group import WorkerGroup

POLL_INTERVAL_S = 1.0  # how often metrics and heartbeats are drained (failures wake the driver at once)
POLL_TIMEOUT_S = 10.0
# After a first error, wait this long for the other ranks' errors to pick the root cause.
FAILURE_GRACE_S = 2.0
STACKS_TIMEOUT_S = 10.0


class StopSignal:
    """Set by a signal handler or a search (e.g. pruning): stop gracefully; a second request: at once."""

    def __init__(self):
        self.reason: Optional[str] = None
        self.force = threading.Event()
        self._requested = threading.Event()

    def request(self, reason: str) -> None:
        if self._requested.is_set():
            self.force.set()
        self.reason = reason
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()


@dataclass
class Supervisor:
    group: WorkerGroup
    sink: Any  # the run's RunSink actor: records from rank 0, in order
    on_records: Callable[[List[Record]], None]
    stop: StopSignal
    limits: C.FailureConfig  # hang_timeout_s, phase_timeout_s, graceful_stop_s
    warn: Callable[[str], None] = print
    dump_dir: Optional[Path] = None  # where a hang's full stack dump goes (the run dir's hang_reports/)
    heartbeats: Dict[int, Heartbeat] = field(default_factory=dict, init=False)

    def watch(self, run_refs: List[ray.ObjectRef]) -> Outcome:
        rank_of = {ref: rank for rank, ref in enumerate(run_refs)}
        pending = list(run_refs)
        results: Dict[int, Any] = {}
        failures: List[Failure] = []
        first_failure_at: Optional[float] = None
        watchdog = Watchdog(self.limits.hang_timeout_s, time.time())
        stop_forwarded_at: Optional[float] = None
        while True:
            # Returns as soon as any rank's run() ends (finished or failed), else after the interval.
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_INTERVAL_S)
            self.poll(watchdog)
            for ref in done:
                rank = rank_of[ref]
                try:
                    results[rank] = ray.get(ref)
                except (RayActorError, RayTaskError) as err:
                    failures.append(self.failure_from(err, rank))
                    first_failure_at = first_failure_at or time.time()
            now = time.time()
            if failures and (not pending or now - first_failure_at > FAILURE_GRACE_S):
                return Outcome(AttemptStatus.FAILED, failure=self.at_gang_step(root_cause(failures)),
                               last_step=self.last_step())
            if not pending and not failures:
                self.drain_sink()  # the final records (rank 0 waited for their delivery)
                return Outcome(AttemptStatus.FINISHED, result=results.get(0), last_step=self.last_step())
            if failures:
                continue
            if self.stop.force.is_set():
                return Outcome(AttemptStatus.INTERRUPTED, last_step=self.last_step())
            if self.stop.requested and stop_forwarded_at is None:
                for actor in self.group.actors:
                    actor.request_stop.remote(self.stop.reason or "stop requested")
                stop_forwarded_at = now
            if stop_forwarded_at is not None and now - stop_forwarded_at > self.limits.graceful_stop_s:
                self.warn(f"workers did not stop within {self.limits.graceful_stop_s:g}s "
                          "(failure.graceful_stop_s); stopping them now")
                return Outcome(AttemptStatus.INTERRUPTED, last_step=self.last_step())
            if watchdog.hung(now):
                return Outcome(AttemptStatus.FAILED, failure=self.hang_failure(watchdog, now),
                               last_step=self.last_step())

    # ----------------------------------------------------------------- observation
    def drain_sink(self) -> None:
        try:
            records = ray.get(self.sink.drain.remote(), timeout=POLL_TIMEOUT_S * 6)
        except (GetTimeoutError, RayActorError) as err:
            self.warn(f"could not read the run's records ({first_line(str(err))})")
            return
        if records:
            self.on_records(records)

    def poll(self, watchdog: Watchdog) -> None:
        self.drain_sink()
        refs = [actor.poll.remote() for actor in self.group.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_TIMEOUT_S)
        ready_set = set(ready)
        now = time.time()
        for rank, ref in enumerate(refs):
            if ref not in ready_set:
                continue  # unresponsive: counts as no progress
            try:
                heartbeat: Heartbeat = ray.get(ref)
            except (RayActorError, RayTaskError, GetTimeoutError):
                continue  # a dead worker shows up through its run() result
            self.heartbeats[rank] = heartbeat
            watchdog.observe(rank, heartbeat.progress, now)

    def last_step(self) -> int:
        return max((hb.step for hb in self.heartbeats.values()), default=0)

    def at_gang_step(self, failure: Failure) -> Failure:
        """A dead process reported its step up to a poll interval before it died; the survivors,
        polled since and stuck in the step after its last, know how far the gang got."""
        if failure.kind != Kind.WORKER_DIED:
            return failure  # an exception carries its exact step
        return dataclasses.replace(failure, step=max(failure.step, self.last_step()))

    def failure_from(self, err: Exception, rank: int) -> Failure:
        info = self.group.infos[rank]
        heartbeat = self.heartbeats.get(rank)
        step = heartbeat.step if heartbeat else 0
        if isinstance(err, RayTaskError):
            cause = err.cause if getattr(err, "cause", None) is not None else err
            if isinstance(cause, TrainingError):  # raised by the training loop: exact step, full traceback
                kind = Kind.PREEMPTED if cause.error_type == "Preempted" else Kind.EXCEPTION
                return Failure(kind, rank, cause.step, message=cause.message, node=info.node_ip,
                               error_type=cause.error_type, traceback=cause.traceback_text, detected_at=time.time())
            return Failure(Kind.EXCEPTION, rank, step, message=str(cause), node=info.node_ip,
                           error_type=type(cause).__name__, traceback=str(err), detected_at=time.time())
        return Failure(Kind.WORKER_DIED, rank, step, message=death_message(str(err)), node=info.node_ip,
                       error_type=type(err).__name__, traceback=str(err), detected_at=time.time())

    def hang_failure(self, watchdog: Watchdog, now: float) -> Failure:
        ranks = watchdog.stalest(list(range(self.group.size)), now)
        stacks = self.collect_stacks()
        states = [RankState(rank, self.rank_detail(rank, watchdog, now), stacks.get(rank, NO_STACK)) for rank in ranks]
        dump = self.write_dump(full_dump(states))
        # The first line (the failure's signature and summary) names the likeliest culprit (the odd
        # stack out, else the stalest rank) and its phase.
        culprit = likely_culprit(states)
        message = (f"no progress on any rank for {self.limits.hang_timeout_s:g}s (failure.hang_timeout_s); "
                   f"rank {culprit} {self.phase_text(culprit, now)}")
        return Failure(Kind.HANG, None, self.last_step(), message=message,
                       traceback=hang_report(states, str(dump) if dump else None), detected_at=now)

    def rank_detail(self, rank: int, watchdog: Watchdog, now: float) -> str:
        info = self.group.infos[rank]
        idle = watchdog.idle_for(rank, now)
        idle_text = f"{idle:.0f}s" if idle is not None else "since start"
        return f"node {info.node_ip}, pid {info.pid}: no progress for {idle_text}, {self.phase_text(rank, now)}"

    def write_dump(self, text: str) -> Optional[Path]:
        """Every rank's stack to a file in the run dir (the report itself is cut to a size limit)."""
        if self.dump_dir is None:
            return None
        path = self.dump_dir / f"hang-step{self.last_step()}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        try:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as err:
            self.warn(f"could not write the hang's stack dump to {path} ({err})")
            return None
        return path

    def phase_text(self, rank: int, now: float) -> str:
        hb = self.heartbeats.get(rank)
        if hb is None:
            return "never answered a poll"
        text = f"last in phase '{hb.phase}' at step {hb.step}"
        if hb.phase not in UNIT_PHASES:  # a long phase: how long it has run, against its own bound
            bound = self.limits.phase_timeout_s
            over = " (over failure.phase_timeout_s)" if now - hb.phase_started >= bound else ""
            text += f" for {now - hb.phase_started:.0f}s{over}"
        return text

    def collect_stacks(self) -> Dict[int, str]:
        refs = {rank: actor.stacks.remote() for rank, actor in enumerate(self.group.actors)}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=STACKS_TIMEOUT_S)
        stacks = {}
        for rank, ref in refs.items():
            if ref in ready:
                try:
                    stacks[rank] = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a report, never a reason to crash the driver
                    stacks[rank] = f"(stack unavailable: {first_line(str(err))})"
        return stacks


def death_message(text: str) -> str:
    """Ray's actor-death text, cut to what tells the cause (exit type and detail, e.g. OOM or SIGKILL)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if "exit" in line.lower() or "node" in line.lower()]
    return " ".join((lines[:1] + useful[:2]) or ["the worker process died"])[:1000]


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
