"""Callbacks that decide at each validation: the best model, the overfitting signal, early stopping.
The decisions themselves are the pure components of ``policy/monitors.py``."""

from __future__ import annotations

import copy
from typing import Dict

from orchestrator.policy import monitors as M
from orchestrator.policy.outcomes import StopKind
from orchestrator.worker.callbacks.base import Callback


class BestModel(Callback):
    """Tracks the best validation by ``checkpoint.monitor``; keeps its weights when a test split will
    evaluate them (``loop.best_weights``, also saved in checkpoints)."""

    state_key = "best"

    def __init__(self, monitor: str, mode: str, keep_weights: bool):
        self.tracker = M.BestTracker(monitor, mode)
        self.keep_weights = keep_weights

    def on_validation_end(self, loop, step, metrics, train) -> None:
        if self.tracker.update(metrics, step) and self.keep_weights:
            loop.best_weights = copy.deepcopy(loop.c.module.state_dict())

    def state_dict(self):
        return M.progress_of(self.tracker, M.Monitors.PROGRESS["best"])

    def load_state_dict(self, state) -> None:
        M.restore_progress(self.tracker, state, M.Monitors.PROGRESS["best"])


class OverfittingSignal(Callback):
    state_key = "overfitting"

    def __init__(self, patience: int, stop: bool):
        self.detector = M.OverfittingDetector(patience)
        self.stop_on_signal = stop

    def on_validation_end(self, loop, step, metrics, train) -> None:
        signal = self.detector.update(train.get("loss"), metrics.get("val/loss"))
        loop.r.metrics(step, {"signals/overfitting": 1.0 if signal else 0.0})
        if signal:
            loop.r.event(step, "overfitting", signal)
            if self.stop_on_signal:
                loop.stop(StopKind.OVERFITTING, f"overfitting: {signal}")

    def state_dict(self):
        return M.progress_of(self.detector, M.Monitors.PROGRESS["overfitting"])

    def load_state_dict(self, state) -> None:
        M.restore_progress(self.detector, state, M.Monitors.PROGRESS["overfitting"])


class EarlyStopping(Callback):
    state_key = "early"

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float = 0.0):
        self.rule = M.EarlyStopping(monitor, mode, patience, min_delta)

    def on_validation_end(self, loop, step, metrics: Dict[str, float], train) -> None:
        reason = self.rule.update(metrics)
        if reason:
            loop.r.event(step, "early_stopping", reason)
            loop.stop(StopKind.EARLY_STOPPING, f"early stopping: {reason}")

    def state_dict(self):
        return M.progress_of(self.rule, M.Monitors.PROGRESS["early"])

    def load_state_dict(self, state) -> None:
        M.restore_progress(self.rule, state, M.Monitors.PROGRESS["early"])
