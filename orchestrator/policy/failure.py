"""What to do after a failure: a small pure policy, carried out by the controller.

Kept free of Ray and torch so it can be tested as a decision table. The controller
takes any ``FailurePolicy``; ``MaxFailuresPolicy`` (failure.max_failures) is the default.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Protocol, Sequence


class Kind(str, Enum):
    WORKER_DIED = "worker_died"   # process killed, OOM, or its node lost
    EXCEPTION = "exception"       # a Python exception in the worker (maybe the user's code)
    HANG = "hang"                 # no progress for failure.hang_timeout_s
    START = "start"               # a replacement gang could not be started (no capacity, start-up error)
    PREEMPTED = "preempted"       # a worker was given notice (SIGTERM) and left after a checkpoint


@dataclass(frozen=True)
class Failure:
    kind: Kind
    rank: Optional[int]
    step: int                     # the gang's last known step
    message: str
    node: str = ""
    error_type: str = ""
    traceback: str = ""
    detected_at: float = 0.0

    @property
    def signature(self) -> str:
        """Same signature twice = the same bug at the same place."""
        first_line = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.kind.value}|{self.error_type}|{first_line}|step={self.step}"

    def describe(self) -> str:
        where = f"rank {self.rank}" if self.rank is not None else "the gang"
        node = f" on node {self.node}" if self.node else ""
        return f"{self.kind.value} of {where}{node} at step {self.step}: {self.message.strip().splitlines()[0] if self.message.strip() else ''}"


class TrainingError(RuntimeError):
    """An exception in a worker's training, with the step it happened at and its full traceback."""

    def __init__(self, step: int, error: BaseException):
        self.step = step
        self.error_type = type(error).__name__
        self.message = str(error)
        self.traceback_text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        super().__init__(f"{self.error_type} at step {step}: {self.message}")

    def __reduce__(self):  # pickles as plain data (the original exception may not pickle)
        return rebuild_training_error, (self.step, self.error_type, self.message, self.traceback_text)


def rebuild_training_error(step, error_type, message, traceback_text) -> "TrainingError":
    err = TrainingError.__new__(TrainingError)
    err.step, err.error_type, err.message, err.traceback_text = step, error_type, message, traceback_text
    RuntimeError.__init__(err, f"{error_type} at step {step}: {message}")
    return err


class Action(str, Enum):
    RESTART = "restart"
    RAISE = "raise"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(failure: Failure, history: Sequence[Failure], max_failures: int) -> Decision:
    """``history``: earlier failures of this run, oldest first (not including ``failure``)."""
    count = len(history) + 1
    if is_config_error(failure):
        return Decision(Action.RAISE, "a configuration error: restarting cannot fix it")
    if is_bad_data(failure):
        return Decision(Action.RAISE, "bad data (the message names the file): restarting cannot fix it")
    if failure.kind == Kind.EXCEPTION and any(f.signature == failure.signature for f in history):
        return Decision(Action.RAISE, f"the same exception came back at the same step ({failure.error_type} at "
                                      f"step {failure.step}): a bug, not a fault; not restarting again")
    if failure.kind == Kind.PREEMPTED:  # the machine goes away, not the code: not counted as a failure
        return Decision(Action.RESTART, "a preempted worker is replaced (not counted in failure.max_failures)")
    count -= sum(f.kind == Kind.PREEMPTED for f in history)
    if count > max_failures:
        return Decision(Action.RAISE, f"failure {count} exceeds failure.max_failures={max_failures}")
    return Decision(Action.RESTART, f"restart {count} of at most {max_failures}")


def is_config_error(failure: Failure) -> bool:
    """A ConfigError raised on a worker (e.g. data.batch_size against a user's dataset, whose size only
    the workers know): the run stops with its one-line message and exit 2, like a config error found
    on the driver."""
    return failure.kind == Kind.EXCEPTION and failure.error_type == "ConfigError"


def is_bad_data(failure: Failure) -> bool:
    """A sample that cannot be read, or more skipped than data.max_bad_samples (data/bad_samples.py)."""
    return failure.kind == Kind.EXCEPTION and failure.error_type == "BadDataError"


class FailurePolicy(Protocol):
    """Restart or raise after ``failure``; ``history``: earlier failures of this run, oldest first."""

    def decide(self, failure: Failure, history: Sequence[Failure]) -> Decision: ...


@dataclass(frozen=True)
class MaxFailuresPolicy:
    """Restart up to failure.max_failures times; raise at once when the same exception comes back."""
    max_failures: int

    def decide(self, failure: Failure, history: Sequence[Failure]) -> Decision:
        return decide(failure, history, self.max_failures)


def policy_from_config(cfg) -> FailurePolicy:
    """``failure.policy`` (a user's class by ``_target_``) or the default table."""
    if not cfg.policy:
        return MaxFailuresPolicy(cfg.max_failures)
    from orchestrator.components.spec import Spec

    return Spec.of("failure.policy", cfg.policy).build(max_failures=cfg.max_failures)


def root_cause(failures: Sequence[Failure]) -> Failure:
    """Of the errors one incident raised on several ranks, the one that caused the others.

    When one rank dies or raises, its peers fail in their next collective; those
    collective errors are symptoms. Prefer a dead process, then an exception that
    is not a collective error, then whatever came first.
    """
    def weight(f: Failure) -> int:
        if f.kind in (Kind.WORKER_DIED, Kind.PREEMPTED):
            return 0
        if f.kind == Kind.EXCEPTION and not is_collective_error(f):
            return 1
        return 2
    return sorted(failures, key=lambda f: (weight(f), f.detected_at))[0]


COLLECTIVE_MARKERS = ("DistBackendError", "Connection closed by peer", "Connection reset by peer", "gloo",
                      "NCCL", "ProcessGroup", "Broken pipe", "Socket Timeout", "timed out")


def is_collective_error(f: Failure) -> bool:
    text = f"{f.error_type} {f.message}"
    return any(marker in text for marker in COLLECTIVE_MARKERS)
