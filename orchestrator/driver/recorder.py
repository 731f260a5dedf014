"""Driver side of a run's records: fans worker records out to TensorBoard, the terminal,
the checkpoint store and the summary. One place that knows where each record goes."""

from __future__ import annotations

import pickle
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from orchestrator.driver.progress import ProgressView
from orchestrator.records import (CheckpointRecord, EventRecord, FirstStepInfo, HistogramRecord, MetricsRecord,
                                  PlanInfo, Record, StartupInfo)
from orchestrator.driver.tensorboard_sink import TensorBoardSink
from orchestrator.policy.input_bound import TAG as INPUT_BOUND_TAG, InputBoundMonitor

MetricsObserver = Callable[[int, Dict[str, float]], None]


@dataclass
class InboundTraffic:
    """Worker records reaching the driver: their pickled size (about what Ray carried), count and time span."""
    bytes: int = 0
    records: int = 0
    first_unix: Optional[float] = None
    last_unix: Optional[float] = None

    def add(self, records: List[Record]) -> None:
        now = time.time()
        self.bytes += len(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
        self.records += len(records)
        self.first_unix = self.first_unix or now
        self.last_unix = now


@dataclass
class RunLog:
    """What the summary reports, accumulated while the run goes."""
    last: Dict[str, float] = field(default_factory=dict)       # latest value of every scalar
    last_step: Dict[str, int] = field(default_factory=dict)
    events: List[Dict[str, Any]] = field(default_factory=list)
    restarts: List[Dict[str, Any]] = field(default_factory=list)
    timing: Dict[str, float] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)
    first_step_unix_per_attempt: List[float] = field(default_factory=list)
    inbound: InboundTraffic = field(default_factory=InboundTraffic)


class Recorder:
    def __init__(self, tb: TensorBoardSink, view: ProgressView, observer: Optional[MetricsObserver] = None,
                 input_bound: Optional[InputBoundMonitor] = None):
        self.tb, self.view, self.observer, self.input_bound = tb, view, observer, input_bound
        self.log = RunLog()
        self.handlers: Dict[type, Callable[[Any], None]] = {
            MetricsRecord: self.on_metrics, EventRecord: self.on_event, HistogramRecord: self.on_histograms,
            PlanInfo: self.on_plan, StartupInfo: self.on_startup, FirstStepInfo: self.on_first_step,
            CheckpointRecord: self.on_checkpoint,
        }

    def handle(self, records: List[Record]) -> None:
        self.log.inbound.add(records)
        for record in records:
            self.handlers[type(record)](record)

    def on_metrics(self, record: MetricsRecord) -> None:
        step, values = record.step, record.values
        self.tb.scalars(step, values)
        for key, value in values.items():
            if step >= self.log.last_step.get(key, -1):
                self.log.last[key], self.log.last_step[key] = value, step
        self.view.metrics(step, values)
        if self.input_bound is not None:
            self.watch_input(step, values)
        if self.observer is not None:
            self.observer(step, values)

    def watch_input(self, step: int, values: Dict[str, float]) -> None:
        """Per-rank data waits, timed by the driver's clock as they arrive (about once a second)."""
        notice = self.input_bound.observe(time.monotonic(), values)
        if notice is None:
            return
        self.tb.scalars(step, {INPUT_BOUND_TAG: notice.value}, replayable=False)
        if notice.message:
            self.event(step, "input_bound", notice.message)

    def on_histograms(self, record: HistogramRecord) -> None:
        for tag, histogram in record.histograms.items():
            self.tb.histogram(tag, histogram, record.step)

    def on_plan(self, record: PlanInfo) -> None:
        self.log.info.update(asdict(record))  # the summary reads world_size
        self.view.plan(record.total_steps, record.steps_per_epoch, record.start_step)

    def on_first_step(self, record: FirstStepInfo) -> None:
        self.log.first_step_unix_per_attempt.append(record.unix)
        if self.log.restarts:  # the first step after a restart: how long the failure cost
            restart = self.log.restarts[-1]
            restart["recovery_s"] = record.unix - restart["detected_unix"]
            self.tb.scalars(restart["step"], {"fault/recovery_s": restart["recovery_s"]}, replayable=False)
            how = {"peer": " from a live peer", "disk": " from the checkpoint"}.get(restart.get("path"), "")
            lost = f", {restart['steps_lost']} steps lost" if "steps_lost" in restart else ""
            self.view.message(f"recovered{how} in {restart['recovery_s']:.1f}s (failure to first step){lost}",
                              style="cyan")
        self.on_startup(record.startup())

    def on_startup(self, record: StartupInfo) -> None:
        if record.attempt == 0:  # a restart's start-up is its recovery time, reported as such
            self.log.timing.update(record.seconds)
            self.tb.scalars(0, {f"startup/{k}": v for k, v in record.seconds.items()}, replayable=False)

    def on_event(self, record: EventRecord) -> None:
        self.event(record.step, record.kind, record.message)

    def event(self, step: int, kind: str, message: str, style: str = "yellow") -> None:
        self.log.events.append({"step": step, "event": kind, "message": message, "time": time.time()})
        self.tb.text(f"events/{kind}", message, step)
        self.view.message(f"[step {step}] {kind}: {message}", style=style)

    def on_checkpoint(self, record: CheckpointRecord) -> None:
        """The RunSink wrote the bytes to disk before passing the record on: nothing left to do."""
