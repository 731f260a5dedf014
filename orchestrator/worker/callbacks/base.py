"""The loop's hook points. Every behaviour beyond stepping and evaluating is a callback: early
stopping, the overfitting signal, the best model, checkpoint scheduling, gradient health, fault
injection, the test-split evaluation, and any a user adds (``+callbacks.<name>._target_=...``).

Hooks run on every rank at the same point, so a decision taken from reduced values (metrics passed
to ``on_validation_end``) is the same everywhere. Report through ``loop.r`` (a do-nothing reporter on
ranks other than 0) and stop with ``loop.stop(StopKind..., reason)``. A callback that keeps state
across a resume returns it from ``state_dict`` (plain numbers; saved in the checkpoint under
``state_key``)."""

from __future__ import annotations

from typing import Any, Dict, Optional


class Callback:
    state_key: Optional[str] = None  # where state_dict() is kept in checkpoints (None: nothing kept)

    def on_fit_start(self, loop) -> None:
        """Before the first step of this attempt (also after a resume)."""

    def on_step_start(self, loop, step: int) -> None:
        """Before optimizer step ``step`` (1-based) runs its forward pass."""

    def on_step_end(self, loop, step: int, result) -> None:
        """After step ``step``, its metrics row and any validation of that step."""

    def on_validation_end(self, loop, step: int, metrics: Dict[str, float], train: Dict[str, float]) -> None:
        """``metrics``: val/* over the whole split (reduced); ``train``: the training window since the last one."""

    def on_epoch_end(self, loop, epoch: int) -> None:
        """After epoch ``epoch`` (1-based count of epochs done) and its validation."""

    def on_fit_end(self, loop) -> Dict[str, float]:
        """After the last step and the final validation and checkpoint; may return final metrics."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Called with what ``state_dict`` returned when the checkpoint was written."""
