"""Pruning that lands at once: after each validation of a trial with a pruner, rank 0 asks the
driver's verdict on it (a bounded wait, ``search/verdicts.py``) and every rank joins the collective
stop vote, so a pruned trial stops at the step of the validation that pruned it instead of 1-3 s later."""

from __future__ import annotations

from typing import List

from orchestrator.worker.callbacks.base import Callback


class PruneVerdict(Callback):
    def __init__(self, channel):
        self.channel = channel  # search.verdicts.VerdictChannel

    def on_validation_end(self, loop, step, metrics, train) -> None:
        if self.channel.metric not in metrics:  # the same on every rank: metrics are reduced
            return
        if loop.stop_reason is not None or step >= loop.c.total_steps:
            return  # the last validation: the trial is complete either way (as before)
        if loop.c.rank == 0:
            prune = self.channel.ask(step, metrics)
            if prune:
                loop.r.request_stop(f"pruned at step {step}")
            elif prune is None:
                loop.r.event(step, "pruning", f"no pruning verdict within {self.channel.wait_s:g}s; "
                                              "a prune would arrive at a later step")
        loop.flush_logs()  # the stop vote, a collective: every rank stops at this step, or none does


def attempt_callbacks(attempt) -> List[Callback]:
    """The callbacks an attempt brings along besides the config's (a trial's pruning verdicts)."""
    channel = getattr(attempt, "verdicts", None)
    return [PruneVerdict(channel)] if channel is not None else []
