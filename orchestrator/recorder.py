"""Driver side of a run's records: fans worker records out to TensorBoard, the terminal,
the checkpoint store and the summary. One place that knows where each record goes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from orchestrator.progress import ProgressView
from orchestrator.tensorboard_sink import TensorBoardSink

MetricsObserver = Callable[[int, Dict[str, float]], None]


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


class Recorder:
    def __init__(self, tb: TensorBoardSink, view: ProgressView, observer: Optional[MetricsObserver] = None):
        self.tb, self.view, self.observer = tb, view, observer
        self.log = RunLog()

    def handle(self, records: List[Dict[str, Any]]) -> None:
        for record in records:
            getattr(self, f"on_{record['kind']}")(record)

    def on_metrics(self, record: Dict[str, Any]) -> None:
        step, values = record["step"], record["values"]
        self.tb.scalars(step, values)
        for key, value in values.items():
            if step >= self.log.last_step.get(key, -1):
                self.log.last[key], self.log.last_step[key] = value, step
        self.view.metrics(step, values)
        if self.observer is not None:
            self.observer(step, values)

    def on_histograms(self, record: Dict[str, Any]) -> None:
        for tag, histogram in record["histograms"].items():
            self.tb.histogram(tag, histogram, record["step"])

    def on_info(self, record: Dict[str, Any]) -> None:
        values = record["values"]
        self.log.info.update({k: v for k, v in values.items() if k not in ("startup", "attempt")})
        if "total_steps" in values:
            self.view.plan(values["total_steps"], values["steps_per_epoch"], values["start_step"])
        if "first_step_unix" in values:
            self.log.first_step_unix_per_attempt.append(values["first_step_unix"])
            if self.log.restarts:  # the first step after a restart: how long the failure cost
                restart = self.log.restarts[-1]
                restart["recovery_s"] = values["first_step_unix"] - restart["detected_unix"]
                self.tb.scalars(restart["step"], {"fault/recovery_s": restart["recovery_s"]}, replayable=False)
                self.view.message(f"recovered in {restart['recovery_s']:.1f}s (failure to first step)", style="cyan")
        if "startup" in values and values.get("attempt") == 0:  # a restart's start-up is its recovery time
            self.log.timing.update(values["startup"])
            self.tb.scalars(0, {f"startup/{k}": v for k, v in values["startup"].items()}, replayable=False)

    def on_event(self, record: Dict[str, Any]) -> None:
        self.event(record["step"], record["event"], record["message"])

    def event(self, step: int, kind: str, message: str, style: str = "yellow") -> None:
        self.log.events.append({"step": step, "event": kind, "message": message, "time": time.time()})
        self.tb.text(f"events/{kind}", message, step)
        self.view.message(f"[step {step}] {kind}: {message}", style=style)

    def on_checkpoint(self, record: Dict[str, Any]) -> None:
        """The RunSink wrote the bytes to disk before passing the record on: nothing left to do."""
