"""What a worker tells the driver, one small dataclass per kind, defined here only.

Rank 0's Reporter builds these records, they travel (pickled by Ray) through the
run's RunSink to the driver, and the Recorder dispatches on their type. A
``Heartbeat`` is answered by every worker's ``poll``. No module spells the
fields of another's dict: a typo is an AttributeError where it is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

from orchestrator.checkpoint.files import Manifest


@dataclass
class Heartbeat:
    rank: int
    step: int = 0
    # starting | build | restore | first_step | train | validate | test | checkpoint | saving | done
    phase: str = "starting"
    progress: int = 0         # grows with every step or evaluation batch (and while a long phase runs)
    updated: float = field(default_factory=time.time)
    phase_started: float = field(default_factory=time.time)  # when ``phase`` began (wall clock)


@dataclass
class MetricsRecord:
    step: int
    values: Dict[str, float]


@dataclass
class EventRecord:
    step: int
    kind: str       # e.g. non_finite, overfitting, early_stopping, stopped
    message: str


@dataclass
class HistogramRecord:
    step: int
    histograms: Dict[str, Dict]   # tag -> histogram (see health.LayerStats.histograms)


@dataclass
class PlanInfo:
    """The attempt's schedule, sent when the loop starts (for the progress bar and the summary)."""
    steps_per_epoch: int
    total_steps: int
    start_step: int
    world_size: int
    samples_per_step: int
    data_sizes: Dict[str, int] = field(default_factory=dict)  # samples per split, as this worker built them


@dataclass
class StartupInfo:
    """Seconds a worker spent getting ready, by phase (e.g. ``worker_build_s``)."""
    attempt: int
    seconds: Dict[str, float]


@dataclass
class FirstStepInfo:
    """The end of an attempt's first step: start-up is over (and a restart has recovered)."""
    attempt: int
    unix: float             # wall clock (time.time) when the first step ended
    first_batch_s: float
    first_step_s: float

    def startup(self) -> StartupInfo:
        return StartupInfo(self.attempt, {"first_batch_s": self.first_batch_s, "first_step_s": self.first_step_s})


InfoRecord = Union[PlanInfo, StartupInfo, FirstStepInfo]


@dataclass
class CheckpointRecord:
    step: int
    epoch: int
    metrics: Dict[str, float]        # the validation metrics the checkpoint is ranked by
    # checkpoint.transport=driver: the bytes travel to the RunSink, which stores them and drops them.
    payload: Optional[bytes] = None
    # Direct: rank 0 wrote the file itself; this is its manifest, which the RunSink commits.
    manifest: Optional[Manifest] = None


Record = Union[MetricsRecord, EventRecord, HistogramRecord, PlanInfo, StartupInfo, FirstStepInfo, CheckpointRecord]
