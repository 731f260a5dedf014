"""How things end, as types: why a loop stopped, how an attempt ended, how a run ended.

Pure (no Ray, no torch): the training loop, the supervisor and the controller
all import it, and the controller decides on these values, never on message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Dict, Optional

from orchestrator.policy.failure import Failure


class StopKind(Enum):
    """Why a worker's training loop stopped (``FitResult.stop_kind``; ``stop_reason`` says it for people)."""
    MAX_EPOCHS = "max_epochs"
    MAX_STEPS = "max_steps"
    EARLY_STOPPING = "early_stopping"
    OVERFITTING = "overfitting"         # stopping.stop_on_overfitting
    NON_FINITE = "non_finite"           # health.nan_policy=stop, or too many skipped steps
    REQUESTED = "requested"             # the driver asked (Ctrl-C, SIGTERM, pruning)
    CALLBACK = "callback"               # a user's callback decided the run is done (completed)


class AttemptStatus(Enum):
    """How one attempt (one gang) ended, as the supervisor saw it."""
    FINISHED = "finished"       # every rank returned; rank 0's result is in the outcome
    FAILED = "failed"           # a rank died, raised or hung; the failure is in the outcome
    INTERRUPTED = "interrupted" # stopped at once (second Ctrl-C) or after graceful_stop_s


class RunStatus(StrEnum):
    """How a run ended: ``RunResult.status`` and summary.json's "status" (a StrEnum: equal to its text)."""
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class RunFailed(RuntimeError):
    """The run failed beyond what fault tolerance recovers; ``summary`` is summary.json's content."""

    def __init__(self, message: str, summary: Dict[str, Any]):
        super().__init__(message)
        self.summary = summary


@dataclass
class Outcome:
    """One attempt's end. ``result`` is rank 0's FitResult as the worker returns it (a dict of its
    fields); the properties below are the one place that reads it."""
    status: AttemptStatus
    result: Optional[Dict[str, Any]] = None
    failure: Optional[Failure] = None
    last_step: int = 0
    gang_kept: bool = False  # the gang was kept for a heal from its survivors (failure.recovery=peer)

    @property
    def stop_kind(self) -> Optional[StopKind]:
        return StopKind(self.result["stop_kind"]) if self.result else None

    @property
    def stop_reason(self) -> str:
        return self.result["stop_reason"] if self.result else ""

    @property
    def stopped_on_request(self) -> bool:
        """Stopped because it was asked to (Ctrl-C, pruning): the run did not complete."""
        return bool(self.result and self.result["stopped_on_request"])

    @property
    def timing(self) -> Dict[str, float]:
        return dict(self.result.get("timing", {})) if self.result else {}
