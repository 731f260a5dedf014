"""What the trial scheduler decides, as pure functions of what it knows (table-tested): whether to
start another trial, wait, or end; and what a trial's ending means for its record and for later."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

ERROR_NOTE_CHARS = 300


class Step(enum.Enum):
    START = "start"  # a slot is free and a trial is wanted
    WAIT = "wait"    # trials are running: wait for one to finish
    END = "end"      # nothing runs and nothing more will start


def next_step(free: int, interrupted: bool, remaining: int, running: int) -> Step:
    """After an interruption nothing new starts; the scheduler ends once the running trials have."""
    if free > 0 and remaining > 0 and not interrupted:
        return Step.START
    return Step.WAIT if running else Step.END


def remaining_budget(budget: int, finished: int, running: int) -> int:
    """Trials still to start: interrupted or unplaced trials do not count as finished."""
    return max(0, budget - finished - running)


class Then(enum.Enum):
    NOTHING = "nothing"            # the trial is done with
    RUN_AGAIN = "run again"        # it never trained (no room): queue it again, from scratch
    CONTINUE = "continue"          # cut short: queue it again, continuing from its checkpoint
    END_SEARCH = "end search"      # not even one gang fits an idle cluster: waiting would loop forever


@dataclass(frozen=True)
class Ending:
    """How a trial's gang ended, as its thread reported it."""
    error: Optional[str] = None        # the error's first line, if the run raised
    placement_timeout: bool = False    # the error was: no room for the gang
    run_status: str = ""               # the run's own status when it returned: completed | interrupted
    pruned_at: Optional[int] = None    # the step a pruner stopped it at
    others_running: int = 0            # trials still running besides this one


@dataclass(frozen=True)
class Verdict:
    status: str    # completed | pruned | failed | interrupted | requeued
    note: str = ""
    then: Then = Then.NOTHING


def judge(ending: Ending) -> Verdict:
    if ending.placement_timeout and not ending.others_running:
        return Verdict("failed", "the cluster cannot hold one gang", Then.END_SEARCH)
    if ending.placement_timeout:
        return Verdict("requeued", "no room for the gang; queued again", Then.RUN_AGAIN)
    if ending.error is not None:
        return Verdict("failed", ending.error[:ERROR_NOTE_CHARS])
    if ending.run_status == "interrupted" and ending.pruned_at is not None:
        return Verdict("pruned", f"pruned at step {ending.pruned_at}")
    if ending.run_status == "interrupted":
        return Verdict("interrupted", "queued again", Then.CONTINUE)
    return Verdict("completed")


def first_line(error: BaseException) -> str:
    """An error as one line of a note (its type when it has no message)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def slots_after_placement_timeout(running: int) -> int:
    """The cluster holds fewer gangs than estimated: run as many as now run, at least one."""
    return max(1, running)


def trial_start_s(previous_gang_end: Optional[float], first_step_unix: Optional[float]) -> Optional[float]:
    """A trial's start time: from the end of the gang use of the trial that freed its slot to its own
    first step (None for the first trials, which no trial ended before)."""
    if previous_gang_end is None or first_step_unix is None:
        return None
    return max(0.0, first_step_unix - previous_gang_end)
